package store

import (
	"context"
	"time"
)

// SHIM14: stands in for the store side of issue 14 until it lands.

type FullPolicy int

const (
	FullReject FullPolicy = iota
	FullDropOldest
)

type Eviction struct {
	Seq      uint64
	Function string
	Key      string
	Enqueued time.Time
	Size     int64
	Priority int8
	Reason   string
}

func (s *Store) Cancel(ctx context.Context, seqs []uint64, keep func(tx *Tx, ev Event) error) ([]uint64, error) {
	return nil, nil
}

func (s *Store) Changed() <-chan struct{} { return make(chan struct{}) }

func (s *Store) Evictions(after uint64, limit int) ([]Eviction, uint64, error) { return nil, 0, nil }
