package main

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
)

// entityTag returns the strong entity tag of it: a hash of its stored form,
// which maps one to one to its JSON. Equal items get equal tags, also across
// restarts, and no per-item state is stored. SHA-256 rather than a fast
// non-cryptographic hash, because a client that could make two items collide
// could make a conditional write succeed against the wrong item.
func entityTag(it []byte) string {
	sum := sha256.Sum256(it)
	tag := append(make([]byte, 0, 2+22), '"') // 16 bytes of hash in unpadded base64, quoted
	tag = base64.RawURLEncoding.AppendEncode(tag, sum[:16])
	return string(append(tag, '"'))
}

// The condition fields a request may carry (RFC 9110 §13.1.1, §13.1.2), as
// indexes of conditions.
const ifMatch, ifNoneMatch = 0, 1

// conditions are a request's condition fields: their lines, nil if absent.
// parseConditions checks them.
type conditions [2][]string

// parseConditions reads the condition fields of h. A malformed one is a 400
// rather than ignored, since ignoring it would turn a conditional write into
// an unconditional one.
func parseConditions(h http.Header) (c conditions, f *failure) {
	for i, name := range [...]string{ifMatch: "If-Match", ifNoneMatch: "If-None-Match"} {
		if c[i] = h[name]; c[i] != nil {
			if _, ok := matchField(c[i], "", false); !ok {
				return c, &failure{status: http.StatusBadRequest, detail: "Malformed " + name + " header: send * or a list of quoted entity tags"}
			}
		}
	}
	return c, nil
}

// precondition returns the store Precondition that lets a write go ahead if
// the conditions pass, or nil if there are none.
func (c conditions) precondition() Precondition {
	if c[ifMatch] == nil && c[ifNoneMatch] == nil {
		return nil
	}
	return func(current []byte, exists bool) bool {
		tag := ""
		if exists {
			tag = entityTag(current)
		}
		return c.evaluate(tag, false) == 0
	}
}

// evaluate applies the conditions to the current item, whose entity tag is
// tag ("" if there is no item), as RFC 9110 §13.2.2 orders them. It returns
// 0 if the request may go ahead, http.StatusNotModified if safe (a GET or
// HEAD) and If-None-Match matched, and http.StatusPreconditionFailed
// otherwise. If-Match compares strongly (a weak tag never matches),
// If-None-Match weakly.
func (c conditions) evaluate(tag string, safe bool) int {
	matched, _ := matchField(c[ifMatch], tag, false)
	noneMatched, _ := matchField(c[ifNoneMatch], tag, true)
	switch {
	case c[ifMatch] != nil && !matched:
		return http.StatusPreconditionFailed
	case noneMatched && safe:
		return http.StatusNotModified
	case noneMatched:
		return http.StatusPreconditionFailed
	}
	return 0
}

// matchField reports whether a condition field, given as its lines, matches
// the item whose tag is tag ("" if there is none): "*" matches any item, a
// list matches if one of its tags does. It also reports whether the field is
// well formed; an absent one is, and matches nothing.
func matchField(lines []string, tag string, weak bool) (matched, ok bool) {
	field := strings.Join(lines, ",")
	if strings.TrimSpace(field) == "*" {
		return tag != "", true
	}
	return matchTag(field, tag, weak)
}

// matchTag scans field as a list of entity tags (RFC 9110 §8.8.3, with the
// empty list elements §5.6.1 tells recipients to accept) and reports whether
// one of them equals tag (weak tags count only if weak is set), and whether
// the whole field is well formed.
func matchTag(field, tag string, weak bool) (matched, ok bool) {
	for rest := field; ; {
		rest = strings.TrimLeft(rest, " \t,")
		if rest == "" {
			return matched, true
		}
		opaque, isWeak := strings.CutPrefix(rest, "W/")
		if !strings.HasPrefix(opaque, `"`) {
			return false, false
		}
		end := strings.IndexByte(opaque[1:], '"') + 2 // just past the closing quote
		if end == 1 {
			return false, false // no closing quote
		}
		for _, c := range []byte(opaque[1 : end-1]) {
			if c < 0x21 || c == 0x7f {
				return false, false
			}
		}
		if (!isWeak || weak) && opaque[:end] == tag {
			matched = true
		}
		rest = strings.TrimLeft(opaque[end:], " \t")
		if rest != "" && rest[0] != ',' {
			return false, false
		}
	}
}
