// Package jsonvalid is a fast drop-in replacement for encoding/json.Valid.
//
// It exists because Enqueue validates every payload, and encoding/json.Valid
// drives a byte-at-a-time state machine through an indirect call per byte;
// on ~1 KiB payloads that was about a fifth of the CPU of the hot path.
// Valid here is a single iterative loop that skips the plain bytes of
// strings eight at a time.
//
// The contract is exact equivalence with encoding/json.Valid (the v1
// scanner), enforced by a differential fuzz test. That means reproducing its
// leniencies as well as its strictness:
//
//   - String contents are not checked for UTF-8 validity; any byte >= 0x20
//     other than '"' and '\' is accepted as is.
//   - \uXXXX escapes only need four hex digits; lone or mismatched
//     surrogates are accepted.
//   - Nesting deeper than 10000 arrays/objects is rejected, as the scanner
//     rejects it (maxNestingDepth), even if the input is otherwise valid.
//   - Whitespace is exactly space, \t, \n and \r; a byte order mark is not
//     whitespace.
//
// Valid never allocates and uses a bounded amount of stack regardless of the
// input, so adversarial input (megabytes of '[') cannot blow the goroutine
// stack.
package jsonvalid

import (
	"encoding/binary"
	"math/bits"
)

// maxDepth mirrors encoding/json's maxNestingDepth: the 10001st open
// bracket makes the input invalid.
const maxDepth = 10000

type result uint8

const (
	invalid result = iota
	valid
	// tooDeep means the caller-provided container stack was exhausted
	// before the depth limit, so the answer is not yet known.
	tooDeep
)

// Valid reports whether b is exactly one valid JSON value (RFC 8259), with
// optional surrounding whitespace — the same answer as encoding/json.Valid.
func Valid(b []byte) bool {
	// Real payloads are shallow, so first try with a stack that is cheap to
	// zero. Only inputs nested deeper than 256 levels pay for a second pass
	// with a stack big enough for maxDepth.
	var small [4]uint64
	switch scan(b, small[:]) {
	case valid:
		return true
	case invalid:
		return false
	}
	var big [(maxDepth + 63) / 64]uint64
	return scan(b, big[:]) == valid
}

// wsMask has bit c set for each JSON whitespace byte c, so whitespace tests
// are one compare and one shift instead of four compares.
const wsMask = 1<<' ' | 1<<'\t' | 1<<'\n' | 1<<'\r'

func isSpace(c byte) bool {
	return c <= ' ' && wsMask&(uint64(1)<<c) != 0
}

// strPlain[c] is true when c needs no attention inside a string. It is used
// for the tail of strings shorter than a word and to resume after escapes.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

var isHex = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	return t
}()

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// scan validates b using stack as a bitset of open container kinds
// (1 = object, 0 = array). It is one function with gotos rather than
// recursive descent so that depth costs one bit, not a stack frame.
func scan(b []byte, stack []uint64) result {
	// Beyond capacity the answer is tooDeep, unless capacity already
	// covers maxDepth, in which case the input is definitely invalid.
	capacity := len(stack) * 64
	overflow := tooDeep
	if capacity >= maxDepth {
		capacity = maxDepth
		overflow = invalid
	}

	var (
		n        = len(b)
		i        int
		c        byte
		depth    int
		inObject bool // kind of the innermost open container
	)

value:
	for i < n && isSpace(b[i]) {
		i++
	}
	if i >= n {
		return invalid
	}
	c = b[i]
	// Listing each digit keeps this a switch on a value, which the
	// compiler turns into a jump table; that measured ~7% faster on
	// field-heavy payloads than a chain of range tests.
	switch c {
	case '"':
		i++
		goto str
	case '{':
		i++
		if depth >= capacity {
			return overflow
		}
		stack[depth>>6] |= 1 << (depth & 63)
		depth++
		inObject = true
		for i < n && isSpace(b[i]) {
			i++
		}
		if i < n && b[i] == '}' {
			i++
			goto pop
		}
		goto key
	case '[':
		i++
		if depth >= capacity {
			return overflow
		}
		stack[depth>>6] &^= 1 << (depth & 63)
		depth++
		inObject = false
		for i < n && isSpace(b[i]) {
			i++
		}
		if i < n && b[i] == ']' {
			i++
			goto pop
		}
		goto value
	case 't':
		if n-i < 4 || string(b[i:i+4]) != "true" {
			return invalid
		}
		i += 4
		goto end
	case 'f':
		if n-i < 5 || string(b[i:i+5]) != "false" {
			return invalid
		}
		i += 5
		goto end
	case 'n':
		if n-i < 4 || string(b[i:i+4]) != "null" {
			return invalid
		}
		i += 4
		goto end
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		i = number(b, i)
		if i < 0 {
			return invalid
		}
		goto end
	}
	return invalid

key:
	for i < n && isSpace(b[i]) {
		i++
	}
	if i >= n || b[i] != '"' {
		return invalid
	}
	i++
	if i = stringBody(b, i); i < 0 {
		return invalid
	}
	for i < n && isSpace(b[i]) {
		i++
	}
	if i >= n || b[i] != ':' {
		return invalid
	}
	i++
	goto value

str:
	if i = stringBody(b, i); i < 0 {
		return invalid
	}
	goto end

pop:
	depth--
	if depth > 0 {
		d := depth - 1
		inObject = stack[d>>6]&(1<<(d&63)) != 0
	}

end:
	// A value has just been completed.
	for i < n && isSpace(b[i]) {
		i++
	}
	if depth == 0 {
		if i == n {
			return valid
		}
		return invalid
	}
	if i >= n {
		return invalid
	}
	c = b[i]
	i++
	if c == ',' {
		if inObject {
			goto key
		}
		goto value
	}
	if inObject && c == '}' || !inObject && c == ']' {
		goto pop
	}
	return invalid
}

// stringBody scans a string whose opening quote precedes b[i] and returns
// the index just past the closing quote, or -1 if the string is invalid or
// unterminated.
func stringBody(b []byte, i int) int {
	n := len(b)
	for {
		// Payload strings are long runs of plain bytes, so test eight bytes
		// at a time for '"', '\' or a control character with the classic
		// "has zero byte" bit trick. Each of the three terms flags bytes
		// exactly up to its first real match (borrows only propagate towards
		// higher bytes, i.e. later in memory), so the lowest flagged byte of
		// the OR is the first byte needing attention. The ^x factor can be
		// shared because XOR with '"' or '\' leaves the top bit unchanged.
		for n-i >= 8 {
			x := binary.LittleEndian.Uint64(b[i:])
			q := x ^ (lsb * '"')
			s := x ^ (lsb * '\\')
			m := ((x - lsb*0x20) | (q - lsb) | (s - lsb)) &^ x & msb
			if m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				goto special
			}
			i += 8
		}
		for i < n && strPlain[b[i]] {
			i++
		}
		if i >= n {
			return -1
		}
	special:
		switch b[i] {
		case '"':
			return i + 1
		case '\\':
			if i+1 >= n {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if n-i < 6 || !isHex[b[i+2]] || !isHex[b[i+3]] || !isHex[b[i+4]] || !isHex[b[i+5]] {
					return -1
				}
				i += 6
			default:
				return -1
			}
		default: // control character
			return -1
		}
	}
}

// number scans an RFC 8259 number starting at b[i] and returns the index
// just past it, or -1. What may follow the number is the caller's concern,
// which is how "01" is rejected: the number is "0" and "1" is then an
// unexpected byte.
func number(b []byte, i int) int {
	n := len(b)
	if b[i] == '-' {
		i++
		if i >= n {
			return -1
		}
	}
	switch c := b[i]; {
	case c == '0':
		i++
	case c-'1' <= 8:
		i++
		for i < n && b[i]-'0' <= 9 {
			i++
		}
	default:
		return -1
	}
	if i < n && b[i] == '.' {
		i++
		if i >= n || b[i]-'0' > 9 {
			return -1
		}
		i++
		for i < n && b[i]-'0' <= 9 {
			i++
		}
	}
	if i < n && b[i]|0x20 == 'e' {
		i++
		if i < n && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= n || b[i]-'0' > 9 {
			return -1
		}
		i++
		for i < n && b[i]-'0' <= 9 {
			i++
		}
	}
	return i
}
