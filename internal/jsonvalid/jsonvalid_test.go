package jsonvalid

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type validCase struct {
	name string
	in   string
	want bool
}

// nest wraps inner in depth levels of open/close.
func nest(depth int, open, inner, close string) string {
	return strings.Repeat(open, depth) + inner + strings.Repeat(close, depth)
}

// mixedNest alternates arrays and objects so that every bit of the
// container-kind stack is exercised, including across 64-bit word and
// first-pass (256 levels) boundaries.
func mixedNest(depth int) string {
	var sb strings.Builder
	for d := range depth {
		if d%3 == 1 {
			sb.WriteString(`{"k":`)
		} else {
			sb.WriteString(`[`)
		}
	}
	sb.WriteString(`0`)
	for d := depth - 1; d >= 0; d-- {
		if d%3 == 1 {
			sb.WriteString(`}`)
		} else {
			sb.WriteString(`]`)
		}
	}
	return sb.String()
}

func validCases() []validCase {
	cases := []validCase{
		// Framing.
		{"empty", "", false},
		{"whitespace only", " \t\r\n", false},
		{"surrounding whitespace", "  {}  ", true},
		{"all whitespace kinds", "\t\r\n {} \n\r\t", true},
		{"vertical tab is not whitespace", "\v{}", false},
		{"form feed is not whitespace", "{}\f", false},
		{"NBSP is not whitespace", "\u00a0{}", false},
		{"BOM is not whitespace", "\ufeff{}", false},
		{"two objects", "{} {}", false},
		{"two objects no space", "{}{}", false},
		{"two numbers", "1 2", false},
		{"two strings", `"a""b"`, false},
		{"trailing garbage", "{}x", false},
		{"trailing NUL", "{}\x00", false},
		{"trailing comma at top", "1,", false},
		{"invalid UTF-8 outside string", "\xff", false},

		// Literals.
		{"true", "true", true},
		{"false", "false", true},
		{"null", "null", true},
		{"tru", "tru", false},
		{"nul", "nul", false},
		{"fals", "fals", false},
		{"True", "True", false},
		{"NULL", "NULL", false},
		{"nulll", "nulll", false},
		{"truefalse", "truefalse", false},
		{"true1", "true1", false},
		{"literals in array", "[true,false,null]", true},
		{"truncated literal in array", "[tru]", false},

		// Numbers.
		{"zero", "0", true},
		{"minus zero", "-0", true},
		{"minus zero fraction exponent", "-0.0e-0", true},
		{"integer", "1234567890", true},
		{"negative", "-42", true},
		{"fraction", "3.14159", true},
		{"exponent", "1E5", true},
		{"exponent plus", "1e+5", true},
		{"exponent minus", "1e-5", true},
		{"exponent leading zeros", "1e005", true},
		{"huge number", "1" + strings.Repeat("0", 400) + ".5e99999", true},
		{"leading zero", "01", false},
		{"negative leading zero", "-01", false},
		{"double zero", "00", false},
		{"leading zero in array", "[01]", false},
		{"leading zero with fraction", "00.5", false},
		{"lone minus", "-", false},
		{"minus in array", "[-]", false},
		{"minus space digit", "- 1", false},
		{"double minus", "--1", false},
		{"plus", "+1", false},
		{"bare exponent", "1e", false},
		{"exponent sign only", "1e+", false},
		{"exponent sign in array", "[1e-]", false},
		{"trailing dot", "1.", false},
		{"trailing dot in array", "[1.]", false},
		{"leading dot", ".5", false},
		{"dot exponent", "1.e5", false},
		{"two dots", "1.2.3", false},
		{"two exponents", "1e2e3", false},
		{"hex", "0x10", false},
		{"Infinity", "Infinity", false},
		{"NaN", "NaN", false},
		{"digit separator", "1_000", false},
		{"minus letter", "-a", false},

		// Strings and escapes.
		{"empty string", `""`, true},
		{"simple escapes", `"\b\f\n\r\t\"\\\/"`, true},
		{"unicode escape", `"\u00e9\uABCD"`, true},
		{"short unicode escape", `"\u12"`, false},
		{"non-hex unicode escape", `"\u12g4"`, false},
		{"capital U escape", `"\U0041"`, false},
		{"lone high surrogate", `"\uD800"`, true},
		{"lone low surrogate", `"\uDC00"`, true},
		{"reversed surrogates", `"\uDC00\uD800"`, true},
		{"unknown escape", `"\x41"`, false},
		{"single quote escape", `"\'"`, false},
		{"escaped newline", "\"\\\n\"", false},
		{"raw tab", "\"a\tb\"", false},
		{"raw newline", "\"a\nb\"", false},
		{"raw NUL", "\"\x00\"", false},
		{"raw 0x1f", "\"\x1f\"", false},
		{"raw DEL is fine", "\"\x7f\"", true},
		{"invalid UTF-8 byte", "\"\xff\"", true},
		{"overlong UTF-8", "\"\xc0\x80\"", true},
		{"UTF-8 encoded surrogate", "\"\xed\xa0\x80\"", true},
		{"truncated UTF-8", "\"\xe2\x82\"", true},
		{"high bytes that XOR to 0x80", "\"\xa2\xdc\xa0\x80\xa2\xdc\xa0\x80\xa2\xdc\"", true},
		{"unterminated", `"abc`, false},
		{"unterminated after escape", `"abc\`, false},
		{"unterminated after escaped quote", `"abc\"`, false},
		{"unterminated unicode escape", `"\u00`, false},
		{"single quotes", `'a'`, false},

		// Arrays and objects.
		{"empty array", "[]", true},
		{"empty object", "{}", true},
		{"spaced empties", "[ ] ", true},
		{"spaced object", ` { "a" : 1 , "b" : [ ] } `, true},
		{"trailing comma object", `{"a":1,}`, false},
		{"trailing comma array", "[1,]", false},
		{"leading comma array", "[,1]", false},
		{"double comma", "[1,,2]", false},
		{"missing comma", "[1 2]", false},
		{"missing comma object", `{"a":1 "b":2}`, false},
		{"key without value", `{"a"}`, false},
		{"key colon no value", `{"a":}`, false},
		{"unquoted key", `{a:1}`, false},
		{"numeric key", `{1:2}`, false},
		{"single-quoted key", `{'a':1}`, false},
		{"lone comma object", "{,}", false},
		{"extra close", `{"a":1}}`, false},
		{"array closed by brace", "[}", false},
		{"object closed by bracket", "{]", false},
		{"crossed", "[{]}", false},
		{"crossed deeper", `{"a":[}]`, false},
		{"unclosed array", "[", false},
		{"unclosed object", "{", false},
		{"unclosed object with member", `{"a":1`, false},
		{"unclosed after comma", "[1,", false},
		{"colon in array", "[1:2]", false},
		{"duplicate keys are fine", `{"a":1,"a":2}`, true},
		{"nested", `{"a":[1,{"b":null},[[]],"x"],"c":{"d":-1.5e3}}`, true},

		// Depth limit: encoding/json rejects the 10001st level.
		{"depth 10000 arrays", nest(10000, "[", "", "]"), true},
		{"depth 10001 arrays", nest(10001, "[", "", "]"), false},
		{"depth 10000 objects", nest(9999, `{"a":`, "{}", "}"), true},
		{"depth 10001 objects", nest(10000, `{"a":`, "{}", "}"), false},
		{"depth 10000 mixed", mixedNest(10000), true},
		{"depth 10001 mixed", mixedNest(10001), false},
		{"10001 opens only", strings.Repeat("[", 10001), false},
		{"10000 opens only", strings.Repeat("[", 10000), false},
		{"10 MB of opens", strings.Repeat("[", 10<<20), false},
	}

	// Around the first-pass stack size and word boundaries.
	for _, d := range []int{1, 2, 63, 64, 65, 127, 128, 129, 255, 256, 257, 258, 1000} {
		s := mixedNest(d)
		cases = append(cases,
			validCase{fmt.Sprintf("mixed depth %d", d), s, true},
			validCase{fmt.Sprintf("mixed depth %d unclosed", d), s[:len(s)-1], false},
			validCase{fmt.Sprintf("mixed depth %d wrong close", d), swapInnermostClose(s), false},
		)
	}

	// Every position of a special byte relative to the 8-byte word scan.
	for off := range 20 {
		pad := strings.Repeat("x", off)
		tail := strings.Repeat("y", 11)
		cases = append(cases,
			validCase{fmt.Sprintf("escaped quote at %d", off), `"` + pad + `\"` + tail + `"`, true},
			validCase{fmt.Sprintf("escaped unicode at %d", off), `"` + pad + `\u00e9` + tail + `"`, true},
			validCase{fmt.Sprintf("bad escape at %d", off), `"` + pad + `\q` + tail + `"`, false},
			validCase{fmt.Sprintf("control at %d", off), `"` + pad + "\x01" + tail + `"`, false},
			validCase{fmt.Sprintf("end quote at %d", off), `["` + pad + `",1]`, true},
			validCase{fmt.Sprintf("unterminated at %d", off), `"` + pad, false},
			validCase{fmt.Sprintf("high bytes at %d", off), `"` + pad + "\xa2\xdc\xff" + tail + `"`, true},
		)
	}
	return cases
}

// swapInnermostClose turns the first closing bracket into the other kind.
func swapInnermostClose(s string) string {
	i := strings.IndexAny(s, "]}")
	repl := "]"
	if s[i] == ']' {
		repl = "}"
	}
	return s[:i] + repl + s[i+1:]
}

func TestValid(t *testing.T) {
	for _, tc := range validCases() {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.in)
			require.Equal(t, tc.want, json.Valid(b), "encoding/json disagrees with the table")
			require.Equal(t, tc.want, Valid(b))
		})
	}
}

// TestValidExhaustiveShort compares against encoding/json on every string of
// up to four bytes over an alphabet covering each grammar decision, which
// reaches corners a coverage-guided fuzzer may take a while to find.
func TestValidExhaustiveShort(t *testing.T) {
	const alphabet = "[]{}:,\"\\/01 9-+.eEutrnfa\t\x01\xff"
	buf := make([]byte, 0, 4)
	var walk func()
	walk = func() {
		if json.Valid(buf) != Valid(buf) {
			t.Fatalf("mismatch on %q: encoding/json %v", buf, json.Valid(buf))
		}
		if len(buf) == cap(buf) {
			return
		}
		for i := range len(alphabet) {
			buf = append(buf, alphabet[i])
			walk()
			buf = buf[:len(buf)-1]
		}
	}
	walk()
}

func TestValidDoesNotAllocate(t *testing.T) {
	for _, in := range []string{orderPayload(), fieldsPayload(), mixedNest(10000), strings.Repeat("[", 1<<20)} {
		b := []byte(in)
		allocs := testing.AllocsPerRun(10, func() { Valid(b) })
		require.Zero(t, allocs)
	}
}

func FuzzValid(f *testing.F) {
	for _, tc := range validCases() {
		if len(tc.in) <= 4096 {
			f.Add([]byte(tc.in))
		}
	}
	f.Add([]byte(orderPayload()))
	f.Add([]byte(fieldsPayload()))
	f.Fuzz(func(t *testing.T, b []byte) {
		require.Equal(t, json.Valid(b), Valid(b), "input %q", b)
	})
}

// orderPayload is the typical Enqueue payload: one short field and one long
// string, 1 KiB in total.
func orderPayload() string {
	const head = `{"order":"o-000042","pad":"`
	const tail = `"}`
	return head + strings.Repeat("x", 1024-len(head)-len(tail)) + tail
}

// fieldsPayload is a 1 KiB object of many small fields and numbers, the
// worst case for string skipping.
func fieldsPayload() string {
	var sb strings.Builder
	sb.WriteString("{")
	for i := 0; ; i++ {
		var field string
		switch i % 4 {
		case 0:
			field = fmt.Sprintf(`"id%d":%d`, i, i*7919)
		case 1:
			field = fmt.Sprintf(`"p%d":-%d.%de-3`, i, i, i*31)
		case 2:
			field = fmt.Sprintf(`"s%d":"v%d"`, i, i)
		case 3:
			field = fmt.Sprintf(`"b%d":[true,null,0]`, i)
		}
		if sb.Len()+len(field)+2 > 1024 {
			break
		}
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(field)
	}
	sb.WriteString(strings.Repeat(" ", 1024-1-sb.Len()))
	sb.WriteString("}")
	return sb.String()
}

func BenchmarkValid(b *testing.B) {
	payloads := []struct {
		name string
		data []byte
	}{
		{"order1KiB", []byte(orderPayload())},
		{"fields1KiB", []byte(fieldsPayload())},
	}
	impls := []struct {
		name string
		fn   func([]byte) bool
	}{
		{"jsonvalid", Valid},
		{"encoding_json", json.Valid},
	}
	for _, p := range payloads {
		if !json.Valid(p.data) || len(p.data) != 1024 {
			b.Fatalf("bad benchmark payload %s (%d bytes)", p.name, len(p.data))
		}
		for _, impl := range impls {
			b.Run(p.name+"/"+impl.name, func(b *testing.B) {
				b.SetBytes(int64(len(p.data)))
				b.ReportAllocs()
				for b.Loop() {
					if !impl.fn(p.data) {
						b.Fatal("invalid")
					}
				}
			})
		}
	}
}
