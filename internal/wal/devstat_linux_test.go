package wal

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// devStat returns the write counters of the block device holding dir:
// bytes written, write requests and cache flushes, from
// /sys/dev/block/MAJ:MIN/stat. ok is false where they cannot be read
// (a device without flush counters, a file system on no block device).
// The counters are the device's: other processes' writes and the file
// system's journal count too.
func devStat(dir string) (bytes, writes, flushes int64, ok bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, 0, 0, false
	}
	dev := uint64(st.Dev)
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/stat", major, minor))
	if err != nil {
		return 0, 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 17 {
		return 0, 0, 0, false
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
	// Fields (Documentation/block/stat.rst): 5 write I/Os, 7 write
	// sectors (512 bytes), 16 flush I/Os; counted from 1.
	return n(6) * 512, n(4), n(15), true
}
