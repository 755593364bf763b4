package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseJSONInt(t *testing.T) {
	tests := []struct {
		num  string
		want int64
		res  intResult
	}{
		{"0", 0, intOK},
		{"-0", 0, intOK},
		{"0.000e-99999999999999999999", 0, intOK},
		{"6", 6, intOK},
		{"-6", -6, intOK},
		{"6.0", 6, intOK},
		{"6.000", 6, intOK},
		{"1e3", 1000, intOK},
		{"1E+3", 1000, intOK},
		{"600e-2", 6, intOK},
		{"0.6e1", 6, intOK},
		{"120e-1", 12, intOK},
		{"9223372036854775807", 1<<63 - 1, intOK},
		{"-9223372036854775808", -1 << 63, intOK},
		{"9.223372036854775807e18", 1<<63 - 1, intOK},
		{"92233720368547758070e-1", 1<<63 - 1, intOK},
		{"0.5", 0, intFractional},
		{"6.5", 0, intFractional},
		{"1e-1", 0, intFractional},
		{"6.0000000000000000000001", 0, intFractional},
		{"1e-99999999999999999999", 0, intFractional},
		{"9223372036854775808", 0, intTooLarge},
		{"-9223372036854775809", 0, intTooSmall},
		{"1e19", 0, intTooLarge},
		{"-1e19", 0, intTooSmall},
		{"18446744073709551616", 0, intTooLarge},
		{"99999999999999999999", 0, intTooLarge},
		{"1e99999999999999999999", 0, intTooLarge},
	}
	for _, tt := range tests {
		got, res := parseJSONInt([]byte(tt.num))
		if got != tt.want || res != tt.res {
			t.Errorf("parseJSONInt(%s) = %d, %d; want %d, %d", tt.num, got, res, tt.want, tt.res)
		}
	}
}

// FuzzParseJSONInt compares parseJSONInt with exact rational arithmetic on
// every valid JSON number of moderate exponent.
func FuzzParseJSONInt(f *testing.F) {
	for _, s := range []string{"0", "-1", "6.0", "1e3", "9223372036854775807", "-9223372036854775808", "1.5", "25e-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, num string) {
		var raw json.RawMessage
		if len(num) > 200 || strings.TrimSpace(num) != num || json.Unmarshal([]byte(num), &raw) != nil || (num[0] != '-' && (num[0] < '0' || num[0] > '9')) {
			return
		}
		r, ok := exactNumber(num)
		if !ok {
			return
		}
		got, res := parseJSONInt([]byte(num))
		switch {
		case !r.IsInt():
			if res != intFractional {
				t.Errorf("parseJSONInt(%s) = %d, %d; want intFractional", num, got, res)
			}
		case !r.Num().IsInt64():
			want := intTooLarge
			if r.Sign() < 0 {
				want = intTooSmall
			}
			if res != want {
				t.Errorf("parseJSONInt(%s) = %d, %d; want %d", num, got, res, want)
			}
		case res != intOK || got != r.Num().Int64():
			t.Errorf("parseJSONInt(%s) = %d, %d; want %d", num, got, res, r.Num().Int64())
		}
	})
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

func TestMatchTag(t *testing.T) {
	tests := []struct {
		field, tag string
		weak       bool
		matched    bool
		ok         bool
	}{
		{`"a"`, `"a"`, false, true, true},
		{`"a"`, `"b"`, false, false, true},
		{`W/"a"`, `"a"`, false, false, true},
		{`W/"a"`, `"a"`, true, true, true},
		{`"x", "a"`, `"a"`, false, true, true},
		{` ,"x",,	"a" , `, `"a"`, false, true, true},
		{`""`, `""`, false, true, true},
		{`"a,b"`, `"a,b"`, false, true, true},
		{"\"\x80\xff\"", "\"\x80\xff\"", false, true, true},
		{``, `"a"`, false, false, true},
		{`a`, ``, false, false, false},
		{`"a`, ``, false, false, false},
		{`"a" "b"`, ``, false, false, false},
		{`"a b"`, ``, false, false, false},
		{`w/"a"`, ``, false, false, false},
		{`W/`, ``, false, false, false},
		{`*`, ``, false, false, false},
		{"\"a\x7f\"", ``, false, false, false},
	}
	for _, tt := range tests {
		matched, ok := matchTag(tt.field, tt.tag, tt.weak)
		if matched != tt.matched || ok != tt.ok {
			t.Errorf("matchTag(%q, %q, weak=%v) = %v, %v; want %v, %v", tt.field, tt.tag, tt.weak, matched, ok, tt.matched, tt.ok)
		}
	}
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
		ok = ok && s.i == len(in)
		if want := json.Valid([]byte(in)); ok != want {
			show := in
			if len(show) > 40 {
				show = show[:40] + "..."
			}
			t.Errorf("bodyScanner on %q: valid = %v, encoding/json says %v", show, ok, want)
		}
	}
}

// FuzzDecodeItem compares decodeItem with a plain encoding/json reading of
// the same rules (referenceDecode), body by body: what one accepts the other
// does, with the same item.
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
