package main

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// maxEcho bounds how much of a bad value an error repeats back, so that an
// error answer never grows with the request.
const maxEcho = 64

// echo returns the JSON value raw as an error's "input": itself if short,
// else a string of its first maxEcho bytes of text and an ellipsis.
func echo(raw []byte) json.RawMessage {
	if len(raw) <= maxEcho {
		return raw
	}
	cut := maxEcho
	for cut > 0 && !utf8.RuneStart(raw[cut]) {
		cut--
	}
	s, _ := json.Marshal(string(raw[:cut]) + "…")
	return s
}

// decodeItem decodes a PUT body under the request contract and appends the
// item, in stored form, to dst. It returns every problem found, or nil.
//
// It is stricter than encoding/json and cheaper: keys match exactly, trailing
// data is an error, and one pass over the body both checks its syntax and
// finds the two members, without reflection or allocation.
func decodeItem(dst, body []byte) ([]byte, []fieldError) {
	if len(body) == 0 {
		return appendItem(dst, nil, nil, 0), nil
	}
	if !utf8.Valid(body) {
		return dst, []fieldError{jsonInvalid(invalidUTF8Offset(body))}
	}
	s := bodyScanner{b: body}
	s.skipSpace()
	start := s.i
	if !s.value() {
		return dst, []fieldError{jsonInvalid(s.i)}
	}
	end := s.i
	if s.skipSpace(); s.i < len(body) {
		return dst, []fieldError{jsonInvalid(s.i)} // trailing data
	}
	switch body[start] {
	case 'n': // null: both fields null, as in the original
		return appendItem(dst, nil, nil, 0), nil
	case '{':
	default:
		return dst, []fieldError{{Type: "model_attributes_type", Loc: []any{"body"},
			Msg: "Input should be a valid dictionary or object to extract fields from", Input: echo(body[start:end])}}
	}

	var problems []fieldError
	name := s.name
	if isNull(name) {
		name = nil
	} else if name[0] != '"' {
		problems = append(problems, fieldError{Type: "string_type", Loc: []any{"body", "name"},
			Msg: "Input should be a valid string", Input: echo(name)})
	}
	var size int64
	rawSize := s.size
	if isNull(rawSize) {
		rawSize = nil
	} else if p := checkSize(rawSize, &size); p != nil {
		problems = append(problems, *p)
	}
	if problems != nil {
		return dst, problems
	}
	return appendItem(dst, name, rawSize, size), nil
}

// isNull reports whether the raw JSON value v is absent (nil) or null.
func isNull(v []byte) bool { return v == nil || v[0] == 'n' }

// appendItem appends an item in stored form to dst: name is the item's name
// as a JSON string token (nil for null) and size its value if rawSize is not
// nil. Names are canonicalised, so that equal items are stored alike.
func appendItem(dst, name, rawSize []byte, size int64) []byte {
	switch {
	case name == nil:
		dst = append(dst, "null"...)
	case bytes.IndexByte(name, '\\') < 0:
		// Valid JSON without escapes is already canonical.
		dst = append(dst, name...)
	default:
		var s string
		_ = json.Unmarshal(name, &s) // cannot fail: the scanner checked the string
		dst = appendJSONString(dst, s)
	}
	if rawSize == nil {
		return append(dst, "null"...)
	}
	return strconv.AppendInt(dst, size, 10)
}

// checkSize validates the JSON number (or other value) raw as a size and
// stores it in size, or returns the problem.
func checkSize(raw []byte, size *int64) *fieldError {
	problem := func(typ, msg string) *fieldError {
		return &fieldError{Type: typ, Loc: []any{"body", "size"}, Msg: msg, Input: echo(raw)}
	}
	if c := raw[0]; c != '-' && !isDigit(c) {
		return problem("int_type", "Input should be a valid integer")
	}
	n, r := parseJSONInt(raw)
	switch r {
	case intFractional:
		return problem("int_from_float", "Input should be a valid integer, got a number with a fractional part")
	case intTooLarge:
		return problem("less_than_equal", "Input should be less than or equal to 9223372036854775807")
	case intTooSmall:
		return problem("greater_than_equal", "Input should be greater than or equal to -9223372036854775808")
	}
	*size = n
	return nil
}

// unquoteKey returns the text of the JSON string token key. Keys without
// escapes, which is all real clients send, need no allocation.
func unquoteKey(key []byte) string {
	inner := key[1 : len(key)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		switch string(inner) { // compiled to comparisons; no allocation
		case "name":
			return "name"
		case "size":
			return "size"
		}
		return ""
	}
	var s string
	_ = json.Unmarshal(key, &s)
	return s
}

// maxDepth is how deeply arrays and objects may nest in a body. It is
// encoding/json's limit: deeper bodies are refused, not recursed into.
const maxDepth = 10000

// A bodyScanner checks the JSON syntax of a body in one pass (RFC 8259; the
// body's UTF-8 is checked before) and keeps the raw values of the top-level
// object's "name" and "size" members on the way. Its methods return false at
// a syntax error, with i at the byte at fault.
type bodyScanner struct {
	b          []byte
	i          int
	depth      int
	name, size []byte // raw values; nil if absent
}

// peek returns the byte at i, or 0 at the end.
func (s *bodyScanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *bodyScanner) skipSpace() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// value scans one JSON value starting at i.
func (s *bodyScanner) value() bool {
	switch c := s.peek(); {
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == '"':
		return s.str()
	case c == '-' || isDigit(c):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return false
}

// object scans an object, keeping "name" and "size" if it is the top one.
// A repeated key's last value wins.
func (s *bodyScanner) object() bool {
	if s.depth++; s.depth > maxDepth {
		return false
	}
	top := s.depth == 1
	s.i++ // {
	s.skipSpace()
	if s.peek() == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		s.skipSpace()
		keyStart := s.i
		if s.peek() != '"' || !s.str() {
			return false
		}
		key := s.b[keyStart:s.i]
		if s.skipSpace(); s.peek() != ':' {
			return false
		}
		s.i++
		s.skipSpace()
		valueStart := s.i
		if !s.value() {
			return false
		}
		if top {
			switch unquoteKey(key) {
			case "name":
				s.name = s.b[valueStart:s.i]
			case "size":
				s.size = s.b[valueStart:s.i]
			}
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// array scans an array.
func (s *bodyScanner) array() bool {
	if s.depth++; s.depth > maxDepth {
		return false
	}
	s.i++ // [
	s.skipSpace()
	if s.peek() == ']' {
		s.i++
		s.depth--
		return true
	}
	for {
		s.skipSpace()
		if !s.value() {
			return false
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// str scans a string: no raw control characters, and only JSON's escapes.
func (s *bodyScanner) str() bool {
	for s.i++; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			s.i++
			switch s.peek() {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				for range 4 {
					if s.i++; !isHex(s.peek()) {
						return false
					}
				}
			default:
				return false
			}
		}
	}
	return false
}

// number scans a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *bodyScanner) number() bool {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case isDigit(c):
		s.digits()
	default:
		return false
	}
	if s.peek() == '.' {
		s.i++
		if !isDigit(s.peek()) {
			return false
		}
		s.digits()
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !isDigit(s.peek()) {
			return false
		}
		s.digits()
	}
	return true
}

func (s *bodyScanner) digits() {
	for isDigit(s.peek()) {
		s.i++
	}
}

// literal scans the literal lit: true, false or null.
func (s *bodyScanner) literal(lit string) bool {
	for k := range len(lit) {
		if s.peek() != lit[k] {
			return false
		}
		s.i++
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// jsonInvalid is the problem for a body that is not valid JSON, as FastAPI
// reports it.
func jsonInvalid(offset int) fieldError {
	return fieldError{Type: "json_invalid", Loc: []any{"body", offset}, Msg: "JSON decode error", Input: json.RawMessage(`{}`)}
}

// invalidUTF8Offset returns the offset of the first byte of b that is not
// part of valid UTF-8.
func invalidUTF8Offset(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// intResult says how a JSON number relates to the int64 range.
type intResult int

const (
	intOK intResult = iota
	intFractional
	intTooLarge
	intTooSmall
)

// parseJSONInt returns the value of the valid JSON number num if it is an
// integer (6, 6.0, 1e3 and 600e-2 all are) within int64, and otherwise says
// why not. It works on the decimal digits, so it is exact where float64 is
// not, and a huge exponent costs nothing.
func parseJSONInt(num []byte) (int64, intResult) {
	neg := num[0] == '-'
	i := 0
	if neg {
		i = 1
	}
	intStart := i
	for i < len(num) && num[i] >= '0' && num[i] <= '9' {
		i++
	}
	intPart := num[intStart:i]
	var frac []byte
	if i < len(num) && num[i] == '.' {
		fracStart := i + 1
		for i = fracStart; i < len(num) && num[i] >= '0' && num[i] <= '9'; i++ {
		}
		frac = num[fracStart:i]
	}
	exp := 0
	if i < len(num) { // 'e' or 'E'
		i++
		expNeg := num[i] == '-'
		if num[i] == '-' || num[i] == '+' {
			i++
		}
		for ; i < len(num); i++ {
			// Saturate: past a billion the answer no longer depends on the
			// exact exponent, since a body holds at most a few million digits.
			if exp < 1e9 {
				exp = exp*10 + int(num[i]-'0')
			}
		}
		if expNeg {
			exp = -exp
		}
	}

	// The value is digits × 10^exp, digits being intPart then frac.
	digit := func(k int) byte {
		if k < len(intPart) {
			return intPart[k]
		}
		return frac[k-len(intPart)]
	}
	n := len(intPart) + len(frac)
	exp -= len(frac)
	first, last := 0, n-1
	for first < n && digit(first) == '0' {
		first++
	}
	if first == n {
		return 0, intOK // zero, however written
	}
	for digit(last) == '0' {
		last--
		exp++
	}
	if exp < 0 {
		return 0, intFractional
	}
	tooBig := intTooLarge
	if neg {
		tooBig = intTooSmall
	}
	if last-first+1+exp > 19 {
		return 0, tooBig
	}
	var v uint64
	for k := first; k <= last; k++ {
		v = v*10 + uint64(digit(k)-'0')
	}
	for ; exp > 0; exp-- {
		v *= 10 // cannot overflow: at most 19 digits in all
	}
	switch {
	case neg && v <= 1<<63:
		return int64(-v), intOK
	case !neg && v <= 1<<63-1:
		return int64(v), intOK
	}
	return 0, tooBig
}

// appendJSONString appends s to b as a JSON string. s must be valid UTF-8.
// Only what JSON requires is escaped, as FastAPI's encoder does.
func appendJSONString[T string | []byte](b []byte, s T) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
