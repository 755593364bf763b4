package main

import (
	"encoding/json"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestDecoding checks what bodies mean through the real handler: each PUT
// stores and answers the item decoded from its body.
func TestDecoding(t *testing.T) {
	const null = `{"name":null,"size":null}`
	checkContract(t, []contractCase{
		{name: "partial body leaves size null", req: req{"PUT", "/items/foo", `{"name":"x"}`, jsonCT}, status: 200, body: `{"name":"x","size":null}`},
		{name: "empty body means both null", req: req{"PUT", "/items/foo", "", nil}, status: 200, body: null},
		{name: "JSON null means both null", req: req{"PUT", "/items/new", `null`, jsonCT}, status: 201, body: null},
		{name: "explicit nulls", req: req{"PUT", "/items/foo", `{"name":null,"size":null}`, jsonCT}, status: 200, body: null},
		{name: "empty object", req: req{"PUT", "/items/foo", `{}`, jsonCT}, status: 200, body: null},
		{name: "integral float", req: req{"PUT", "/items/foo", `{"size":6.0}`, jsonCT}, status: 200, body: `{"name":null,"size":6}`},
		{name: "exponent", req: req{"PUT", "/items/foo", `{"size":1e3}`, jsonCT}, status: 200, body: `{"name":null,"size":1000}`},
		{name: "int64 extremes", req: req{"PUT", "/items/foo", `{"size":-9223372036854775808}`, jsonCT}, status: 200, body: `{"name":null,"size":-9223372036854775808}`},
		{name: "unknown and miscased keys ignored", req: req{"PUT", "/items/foo", `{"Name":"no","SIZE":1,"extra":[1,{"a":"}"}],"name":"yes"}`, jsonCT},
			status: 200, body: `{"name":"yes","size":null}`},
		{name: "last repeated key wins", req: req{"PUT", "/items/foo", `{"size":"bad","size":2}`, jsonCT}, status: 200, body: `{"name":null,"size":2}`},
		{name: "escapes are canonicalised", req: req{"PUT", "/items/foo", `{"n\u0061me":"a\u0062\"\/\n\u00e9"}`, jsonCT}, status: 200, body: `{"name":"ab\"/\né","size":null}`},
		{name: "whitespace everywhere", req: req{"PUT", "/items/foo", " \n{ \"name\" : \"x\" ,\t\"size\" : 2 } \r\n", jsonCT}, status: 200, body: `{"name":"x","size":2}`},
	})
}

// TestDecodingErrors checks the 422s through the real handler: pydantic's
// type and loc for every problem a body has.
func TestDecodingErrors(t *testing.T) {
	sizeIs := func(typ string) []problem { return []problem{{typ, []any{"body", "size"}}} }
	invalidAt := func(offset float64) []problem { return []problem{{"json_invalid", []any{"body", offset}}} }
	notObject := []problem{{"model_attributes_type", []any{"body"}}}
	nameNotString := []problem{{"string_type", []any{"body", "name"}}}
	checkContract(t, []contractCase{
		{name: "name not a string", req: req{"PUT", "/items/foo", `{"name":1}`, jsonCT}, status: 422, problems: nameNotString},
		{name: "name an object", req: req{"PUT", "/items/foo", `{"name":{"a":1}}`, jsonCT}, status: 422, problems: nameNotString},
		{name: "size a string", req: req{"PUT", "/items/foo", `{"size":"6"}`, jsonCT}, status: 422, problems: sizeIs("int_type")},
		{name: "size a boolean", req: req{"PUT", "/items/foo", `{"size":true}`, jsonCT}, status: 422, problems: sizeIs("int_type")},
		{name: "size an array", req: req{"PUT", "/items/foo", `{"size":[6]}`, jsonCT}, status: 422, problems: sizeIs("int_type")},
		{name: "size a fraction", req: req{"PUT", "/items/foo", `{"size":6.5}`, jsonCT}, status: 422, problems: sizeIs("int_from_float")},
		{name: "size above int64", req: req{"PUT", "/items/foo", `{"size":9223372036854775808}`, jsonCT}, status: 422, problems: sizeIs("less_than_equal")},
		{name: "size below int64", req: req{"PUT", "/items/foo", `{"size":-1e19}`, jsonCT}, status: 422, problems: sizeIs("greater_than_equal")},
		{name: "every bad field reported", req: req{"PUT", "/items/foo", `{"name":false,"size":"x"}`, jsonCT},
			status: 422, problems: append(nameNotString, sizeIs("int_type")...)},
		{name: "only the last repeated key validated", req: req{"PUT", "/items/foo", `{"size":1,"size":"x"}`, jsonCT}, status: 422, problems: sizeIs("int_type")},
		{name: "malformed JSON", req: req{"PUT", "/items/foo", `{"name":}`, jsonCT}, status: 422, problems: invalidAt(8)},
		{name: "truncated JSON", req: req{"PUT", "/items/foo", `{"name":"x"`, jsonCT}, status: 422, problems: invalidAt(11)},
		{name: "trailing data", req: req{"PUT", "/items/foo", `{"name":"x"} x`, jsonCT}, status: 422, problems: invalidAt(13)},
		{name: "invalid UTF-8", req: req{"PUT", "/items/foo", "{\"name\":\"\xff\"}", jsonCT}, status: 422, problems: invalidAt(9)},
		{name: "body an array", req: req{"PUT", "/items/foo", `[{"name":"x"}]`, jsonCT}, status: 422, problems: notObject},
		{name: "body a string", req: req{"PUT", "/items/foo", `"x"`, jsonCT}, status: 422, problems: notObject},
		{name: "body a number", req: req{"PUT", "/items/foo", `6`, jsonCT}, status: 422, problems: notObject},
	})
}

// FuzzDecodeItem holds decodeItem to referenceDecode, a plain encoding/json
// reading of the same rules, body by body: what one accepts the other does,
// with the same item.
func FuzzDecodeItem(f *testing.F) {
	for _, s := range []string{``, `null`, `{}`, `{"name":"x","size":1}`, `{"size":6.0}`, `{"name":"\u00e9\"","size":-1e2}`,
		`{"size":"6"}`, `[1]`, `{"a":[{"b":"}"}],"name":null}`, `{"name":"x"} x`, "{\"name\":\"\xff\"}", `{"n\u0061me":"y"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		it, problems := decodeItem(nil, []byte(body))
		want, accept, sure := referenceDecode([]byte(body))
		switch {
		case !sure:
		case accept != (problems == nil):
			t.Fatalf("decodeItem(%q): problems %v; encoding/json accepts: %v", body, problems, accept)
		case accept && !sameItem(string(appendItemJSON(nil, it)), want):
			t.Fatalf("decodeItem(%q) = %s; encoding/json reads %s", body, appendItemJSON(nil, it), want)
		}
	})
}

// referenceDecode reads a PUT body by the documented rules with plain
// encoding/json, for comparison with decodeItem. It returns the item's JSON
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
		fail *fieldError
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
		want := (*fieldError)(nil)
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
		if got := string(appendItemJSON(nil, []byte(tt.item))); got != tt.want {
			t.Errorf("appendItemJSON(%s) = %s, want %s", tt.item, got, tt.want)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "tab\tnl\ncr\r", "\x00\x01\x1f\x7f", "é中😀", "<&>", "\u2028"} {
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil || back != s {
			t.Errorf("appendJSONString(%q) = %s, which decodes to %q (%v)", s, got, back, err)
		}
	}
}
