package lambdaname

import "testing"

// The root package's TestValidateEvent* and FuzzValidateEvent try the
// forms at length through Enqueue's validation; this pins the contract of
// the two calls: the qualifier carried, and a reason only on refusal.
func TestFunction(t *testing.T) {
	for fn, want := range map[string]string{
		"orders":                         "",
		"orders:live":                    "live",
		"orders:$LATEST":                 "$LATEST",
		"123456789012:function:orders:7": "7",
		"arn:aws:lambda:us-east-1:123456789012:function:orders":         "",
		"arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:o:a": "a",
	} {
		q, reason := Function(fn)
		if reason != "" || q != want {
			t.Errorf("Function(%q) = %q, %q; want %q, no reason", fn, q, reason, want)
		}
	}
	for _, fn := range []string{"", "has space", "arn:aws:lambda:us-east-1:12:function:o", "o:", string(make([]byte, MaxFunctionLen+1))} {
		if _, reason := Function(fn); reason == "" {
			t.Errorf("Function(%q) accepted", fn)
		}
	}
}

func TestQualifier(t *testing.T) {
	for _, c := range []struct {
		q, fromFunction string
		ok              bool
	}{
		{"", "", true}, {"live", "", true}, {"live", "live", true}, {"$LATEST", "", true},
		{"live", "blue", false}, {"bad qualifier", "", false}, {string(make([]byte, MaxQualifierLen+1)), "", false},
	} {
		if reason := Qualifier(c.q, c.fromFunction); (reason == "") != c.ok {
			t.Errorf("Qualifier(%q, %q) = %q, want ok=%v", c.q, c.fromFunction, reason, c.ok)
		}
	}
}
