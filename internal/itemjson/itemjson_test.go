package itemjson

import (
	"bytes"
	"encoding/json"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeItem holds Decode to referenceDecode, a plain encoding/json
// reading of the same rules, body by body: what one accepts the other does,
// with the same item.
func FuzzDecodeItem(f *testing.F) {
	for _, s := range []string{``, `null`, `{}`, `{"name":"x","size":1}`, `{"size":6.0}`, `{"name":"\u00e9\"","size":-1e2}`,
		`{"size":"6"}`, `[1]`, `{"a":[{"b":"}"}],"name":null}`, `{"name":"x"} x`, "{\"name\":\"\xff\"}", `{"n\u0061me":"y"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		it, problems := Decode(nil, []byte(body))
		want, accept, sure := referenceDecode([]byte(body))
		switch {
		case !sure:
		case accept != (problems == nil):
			t.Fatalf("Decode(%q): problems %v; encoding/json accepts: %v", body, problems, accept)
		case accept && !sameItem(string(AppendObject(nil, it)), want):
			t.Fatalf("Decode(%q) = %s; encoding/json reads %s", body, AppendObject(nil, it), want)
		}
	})
}

// referenceDecode reads a PUT body by the documented rules with plain
// encoding/json, for comparison with Decode. It returns the item's JSON
// and whether the body is acceptable; sure is false when the reference
// cannot decide (a number big.Rat refuses to expand).
func referenceDecode(body []byte) (item string, accept, sure bool) {
	var obj map[string]json.RawMessage // nil for an empty body or null
	if len(body) > 0 && (!utf8.Valid(body) || json.Unmarshal(body, &obj) != nil) {
		return "", false, true // not UTF-8, not JSON, trailing data, or neither an object nor null
	}
	var it struct {
		Name *string `json:"name"`
		Size *int64  `json:"size"`
	}
	if raw := obj["name"]; raw != nil && json.Unmarshal(raw, &it.Name) != nil {
		return "", false, true // neither a string nor null
	}
	if raw := obj["size"]; raw != nil && string(raw) != "null" {
		if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
			return "", false, true // not a number
		}
		r, ok := exactNumber(string(raw))
		if !ok {
			return "", false, false
		}
		if !r.IsInt() || !r.Num().IsInt64() {
			return "", false, true
		}
		n := r.Num().Int64()
		it.Size = &n
	}
	b, _ := json.Marshal(it)
	return string(b), true, true
}

// sameItem reports whether two item JSON texts hold the same values.
func sameItem(a, b string) bool {
	var x, y struct {
		Name *string
		Size *int64
	}
	return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && reflect.DeepEqual(x, y)
}

// TestScannerAgreesWithEncodingJSON checks bodyScanner's syntax decisions
// against encoding/json on inputs at the edges of the grammar.
func TestScannerAgreesWithEncodingJSON(t *testing.T) {
	inputs := []string{
		`{}`, `[]`, `""`, `0`, `-0`, `-`, `01`, `1.`, `.5`, `1e`, `1e+`, `1E-2`, `-1.5e10`, `+1`,
		`true`, `tru`, `truex`, `nul`, `null `, ` {"a":1} `, `{"a":1,}`, `{,}`, `[1,]`, `[,1]`, `{"a" 1}`,
		`{"a":1 "b":2}`, `{1:2}`, `"\u00e9"`, `"\u00g9"`, `"\ud800"`, `"\x"`, `"a` + "\t" + `"`, `"\/"`,
		`{"a":[1,{"b":[]}]}`, `[[[]]]`, `{"a":"}"}`, `"\\"`, `"\"`, `[1 2]`, "\u00a0{}", `{"a":1}{}`,
		strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth),
		strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1),
		strings.Repeat(`{"a":`, maxDepth) + "1" + strings.Repeat("}", maxDepth),
		strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1),
	}
	for _, in := range inputs {
		s := bodyScanner{b: []byte(in)}
		s.skipSpace()
		ok := s.value()
		s.skipSpace()
		if ok, want := ok && s.i == len(in), json.Valid([]byte(in)); ok != want {
			t.Errorf("bodyScanner on %.40q: valid = %v, encoding/json says %v", in, ok, want)
		}
	}
}

func TestParseJSONInt(t *testing.T) {
	tests := []struct {
		num  string
		want int64
		fail *Problem
	}{
		{"0", 0, nil},
		{"-0", 0, nil},
		{"0.000e-99999999999999999999", 0, nil},
		{"6", 6, nil},
		{"-6", -6, nil},
		{"6.0", 6, nil},
		{"6.000", 6, nil},
		{"1e3", 1000, nil},
		{"1E+3", 1000, nil},
		{"600e-2", 6, nil},
		{"0.6e1", 6, nil},
		{"120e-1", 12, nil},
		{"9223372036854775807", 1<<63 - 1, nil},
		{"-9223372036854775808", -1 << 63, nil},
		{"9.223372036854775807e18", 1<<63 - 1, nil},
		{"92233720368547758070e-1", 1<<63 - 1, nil},
		{"0.5", 0, fractionalInt},
		{"6.5", 0, fractionalInt},
		{"1e-1", 0, fractionalInt},
		{"6.0000000000000000000001", 0, fractionalInt},
		{"1e-99999999999999999999", 0, fractionalInt},
		{"9223372036854775808", 0, intTooLarge},
		{"-9223372036854775809", 0, intTooSmall},
		{"1e19", 0, intTooLarge},
		{"-1e19", 0, intTooSmall},
		{"18446744073709551616", 0, intTooLarge},
		{"99999999999999999999", 0, intTooLarge},
		{"1e99999999999999999999", 0, intTooLarge},
		{"1e1000001", 0, intTooLarge},
	}
	for _, tt := range tests {
		if got, fail := parseJSONInt([]byte(tt.num)); got != tt.want || fail != tt.fail {
			t.Errorf("parseJSONInt(%s) = %d, %v; want %d, %v", tt.num, got, fail, tt.want, tt.fail)
		}
	}
}

// FuzzParseJSONInt holds parseJSONInt to exact rational arithmetic on every
// valid JSON number of moderate exponent.
func FuzzParseJSONInt(f *testing.F) {
	for _, s := range []string{"0", "-1", "6.0", "1e3", "9223372036854775807", "-9223372036854775808", "1.5", "25e-1", "0 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, num string) {
		if len(num) > 200 || strings.TrimSpace(num) != num || !json.Valid([]byte(num)) || (num[0] != '-' && (num[0] < '0' || num[0] > '9')) {
			return
		}
		r, ok := exactNumber(num)
		if !ok {
			return
		}
		want := (*Problem)(nil)
		switch {
		case !r.IsInt():
			want = fractionalInt
		case !r.Num().IsInt64() && r.Sign() < 0:
			want = intTooSmall
		case !r.Num().IsInt64():
			want = intTooLarge
		}
		if got, fail := parseJSONInt([]byte(num)); fail != want || want == nil && got != r.Num().Int64() {
			t.Errorf("parseJSONInt(%s) = %d, %v; want %v, %v", num, got, fail, r, want)
		}
	})
}

// exactNumber returns the JSON number num as an exact rational, unless its
// exponent is so large that big.Rat would take seconds (or refuse) to
// expand it; TestParseJSONInt covers those.
func exactNumber(num string) (*big.Rat, bool) {
	if i := strings.IndexAny(num, "eE"); i >= 0 {
		if exp, err := strconv.Atoi(strings.TrimLeft(num[i+1:], "+")); err != nil || exp > 1000 || exp < -1000 {
			return nil, false
		}
	}
	return new(big.Rat).SetString(num)
}

func TestAppendItemJSON(t *testing.T) {
	tests := []struct{ item, want string }{
		{`"Fighters"6`, `{"name":"Fighters","size":6}`},
		{`null3`, `{"name":null,"size":3}`},
		{`"x"null`, `{"name":"x","size":null}`},
		{`nullnull`, `{"name":null,"size":null}`},
		{`"q\"uote\\"-9223372036854775808`, `{"name":"q\"uote\\","size":-9223372036854775808}`},
		{`""0`, `{"name":"","size":0}`},
	}
	for _, tt := range tests {
		if got := string(AppendObject(nil, []byte(tt.item))); got != tt.want {
			t.Errorf("AppendObject(%s) = %s, want %s", tt.item, got, tt.want)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "tab\tnl\ncr\r", "\x00\x01\x1f\x7f", "é中😀", "<&>", "\u2028"} {
		got := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil || back != s {
			t.Errorf("AppendString(%q) = %s, which decodes to %q (%v)", s, got, back, err)
		}
	}
}

// compactCases are bodies in and near the compact form, and whether Decode's
// fast path, compactItem, takes them.
var compactCases = []struct {
	body string
	fast bool
}{
	{`{"name":"Fighters","size":6}`, true},
	{`{"name":null,"size":null}`, true},
	{`{"name":"é中😀","size":-9223372036854775808}`, true},
	{`{"name":"","size":0}`, true},
	{`{"name":"\u0041","size":1}`, false}, // stored as "A"
	{`{"name":"q\"","size":1}`, false},
	{"{\"name\":\"\t\",\"size\":1}", false}, // a raw control character
	{`{"name":6,"size":6}`, false},
	{`{"name":"x","size":"6"}`, false},
	{`{"name":"x","size":06}`, false},
	{`{"name":"x","size":-0}`, false},
	{`{"name":"x","size":6.0}`, false},
	{`{"name":"x","size":1e2}`, false},
	{`{"name":"x","size":9223372036854775807}`, true},
	{`{"name":"x","size":1000000000000000000}`, true},
	{`{"name":"x","size":9223372036854775808}`, false},
	{`{"name":"x","size":-9223372036854775809}`, false},
	{`{"name":"x","size":10000000000000000000}`, false},
	{`{"name":"x","size":-}`, false},
	{`{"name":"x","size":+1}`, false},
	{`{"name":"x","size":6}}`, false},
	{`{"name":"x","size":6} `, false},
	{`{"size":6,"name":"x"}`, false},
}

// TestCompactItem checks which bodies take Decode's fast path, and holds
// those to the scan that it skips.
func TestCompactItem(t *testing.T) {
	for _, tc := range compactCases {
		if _, fast := compactItem(nil, []byte(tc.body)); fast != tc.fast {
			t.Errorf("compactItem(%s) takes it: %v, want %v", tc.body, fast, tc.fast)
		}
		checkCompactItem(t, tc.body)
	}
}

// FuzzCompactItem holds Decode's fast path to the scan that it skips, for
// any body.
func FuzzCompactItem(f *testing.F) {
	for _, tc := range compactCases {
		f.Add(tc.body)
	}
	f.Fuzz(checkCompactItem)
}

// checkCompactItem fails if compactItem takes body but decodeScanned would
// refuse it or store other bytes.
func checkCompactItem(t *testing.T, body string) {
	if !utf8.ValidString(body) {
		return // Decode refuses it before either
	}
	fast, ok := compactItem(nil, []byte(body))
	if !ok {
		return
	}
	if scanned, problems := decodeScanned(nil, []byte(body)); problems != nil || !bytes.Equal(fast, scanned) {
		t.Errorf("%s: the fast path stores %s, the scan %s (problems %v)", body, fast, scanned, problems)
	}
}
