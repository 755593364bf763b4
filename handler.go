package main

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"itemsvc/internal/docs"
	"itemsvc/internal/itemjson"
)

// A route is one pattern of the API and the handler that serves it.
type route struct {
	pattern string
	handler http.Handler
}

// routes lists the whole API, and the docs pages unless pages is nil.
// NewServer adds the 405 and 404 answers.
func routes(store *Store, maxBody int64, pages *docs.Assets) []route {
	rts := []route{
		{"GET /items", handleList(store)},
		{"GET /items/{id}", handleGet(store)},
		{"PUT /items/{id}", handlePut(store, maxBody)},
		{"DELETE /items/{id}", handleDelete(store)},
		{"GET /healthz", serveJSON([]byte(`{"status":"ok"}`))}, // not the store: it cannot fail alone
		{"GET /openapi.json", serveJSON(openAPIDoc)},
	}
	if pages != nil {
		swagger, redoc := pages.Pages()
		rts = append(rts, route{"GET /docs", swagger}, route{"GET /redoc", redoc})
	}
	return rts
}

// handlePut handles "PUT /items/{id}": 201 when it creates the item, 200
// when it replaces it, always with the item as stored.
func handlePut(store *Store, maxBody int64) http.Handler {
	return handleItem(func(w http.ResponseWriter, r *http.Request, id string, conds conditions) *failure {
		buf := bufferPool.Get().(*[]byte)
		defer putBuffer(buf)
		body, f := readBody(r, (*buf)[:0], maxBody)
		*buf = body[:0]
		if f == nil && len(body) > 0 {
			f = checkContentType(r.Header)
		}
		if f != nil {
			return f
		}
		// The item, and then its JSON, go in the buffer's spare capacity: the
		// body is read while the item is encoded.
		it, problems := itemjson.Decode(body[len(body):], body)
		if problems != nil {
			// RFC 9110 §13.2.1: preconditions are evaluated before the content
			// is processed, so a failed one wins over a bad body.
			if pre := conds.precondition(); pre != nil && !pre(store.Get(id)) {
				return preconditionFailed
			}
			return &failure{status: http.StatusUnprocessableEntity, detail: problems}
		}
		created, written, err := store.Put(id, it, conds.precondition())
		switch {
		case err != nil:
			return unavailable
		case !written:
			return preconditionFailed
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		writeJSON(w, status, itemjson.AppendObject(it[len(it):], it))
		return nil
	})
}

// handleGet handles "GET /items/{id}" and HEAD: the item with its entity
// tag, or 304 if the client's copy is current.
func handleGet(store *Store) http.Handler {
	return handleItem(func(w http.ResponseWriter, r *http.Request, id string, conds conditions) *failure {
		it, ok := store.Get(id)
		if !ok {
			return notFound
		}
		tag := entityTag(it)
		w.Header()["Etag"] = []string{tag}
		switch conds.evaluate(tag, true) {
		case http.StatusNotModified:
			w.WriteHeader(http.StatusNotModified)
			return nil
		case http.StatusPreconditionFailed:
			return preconditionFailed
		}
		writeJSON(w, http.StatusOK, itemjson.AppendObject(make([]byte, 0, len(it)+len(`{"name":,"size":}`)), it))
		return nil
	})
}

// handleDelete handles "DELETE /items/{id}": 204, or 404 if there is no such
// item.
func handleDelete(store *Store) http.Handler {
	return handleItem(func(w http.ResponseWriter, r *http.Request, id string, conds conditions) *failure {
		found, deleted, err := store.Delete(id, conds.precondition())
		switch {
		case err != nil:
			return unavailable
		case !found:
			return notFound
		case !deleted:
			return preconditionFailed
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// Pages of "GET /items": the limit unless the client sets one, and the
// largest it may set. S3 pages 1,000 keys.
const (
	defaultLimit = 1000
	maxLimit     = 10000
)

// handleList handles "GET /items": the items whose ids sort after ?after=,
// at most ?limit= of them, in one JSON object keyed by id in id order, and a
// Link to the next page (RFC 8288) if more follow.
func handleList(store *Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit, after, f := pageQuery(r.URL.Query())
		if f != nil {
			writeFailure(w, f)
			return
		}
		b := []byte{'{'}
		last := store.Page(after, limit, func(id, it []byte) {
			if len(b) > 1 {
				b = append(b, ',')
			}
			b = itemjson.AppendObject(append(itemjson.AppendString(b, id), ':'), it)
		})
		if last != "" {
			w.Header()["Link"] = []string{"</items?limit=" + strconv.Itoa(limit) + "&after=" + url.QueryEscape(last) + `>; rel="next"`}
		}
		writeJSON(w, http.StatusOK, append(b, '}'))
	})
}

// pageQuery reads a page's limit and after from q, as FastAPI would: the
// last of a repeated key counts, and unknown keys are ignored.
func pageQuery(q url.Values) (limit int, after string, f *failure) {
	limit = defaultLimit
	var problems []itemjson.Problem
	if v := q["limit"]; v != nil {
		raw := v[len(v)-1]
		var err error
		limit, err = strconv.Atoi(strings.TrimSpace(raw))
		switch {
		case err != nil:
			problems = append(problems, fieldProblem("query", "limit", "int_parsing", "Input should be a valid integer, unable to parse string as an integer", raw))
		case limit < 1:
			problems = append(problems, fieldProblem("query", "limit", "greater_than_equal", "Input should be greater than or equal to 1", raw))
		case limit > maxLimit:
			problems = append(problems, fieldProblem("query", "limit", "less_than_equal", "Input should be less than or equal to "+strconv.Itoa(maxLimit), raw))
		}
	}
	if v := q["after"]; v != nil {
		after = v[len(v)-1]
		if typ, msg := idFault(after); typ != "" {
			problems = append(problems, fieldProblem("query", "after", typ, msg, after))
		}
	}
	if problems != nil {
		return 0, "", &failure{status: http.StatusUnprocessableEntity, detail: problems}
	}
	return limit, after, nil
}

// openAPIDoc is the OpenAPI 3.1 description of this API. Tests check it
// against the routes and the handlers' answers.
//
//go:embed api/openapi.json
var openAPIDoc []byte

// serveJSON answers every request with 200 and body, which must be JSON.
func serveJSON(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, body)
	})
}

// handleItem serves the requests for one item with fn. It checks first what
// every such request carries, the {id} (already percent-decoded by the mux)
// and the condition headers, and answers the failure that they, or fn, come
// to.
func handleItem(fn func(w http.ResponseWriter, r *http.Request, id string, conds conditions) *failure) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		f := checkID(id)
		var conds conditions
		if f == nil {
			conds, f = parseConditions(r.Header)
		}
		if f == nil {
			f = fn(w, r, id, conds)
		}
		if f != nil {
			writeFailure(w, f)
		}
	})
}

// maxIDLen bounds an id in bytes: room for any UUID, URL or path-like key,
// while a single id can never dominate memory.
const maxIDLen = 1024

// checkID returns the failure that an unusable id gets, or nil.
func checkID(id string) *failure {
	switch typ, msg := idFault(id); typ {
	case "":
		return nil
	case "string_too_short", "string_pattern_mismatch":
		// An id is one path segment. The mux decodes %2F inside a segment,
		// which the original answers with 404, and so do we.
		return notFound
	default:
		return &failure{status: http.StatusUnprocessableEntity, detail: []itemjson.Problem{fieldProblem("path", "id", typ, msg, id)}}
	}
}

// idFault returns pydantic's type and message for what is wrong with id as
// an id, or "" if nothing is.
func idFault(id string) (typ, msg string) {
	switch {
	case id == "":
		return "string_too_short", "String should have at least 1 character"
	case strings.Contains(id, "/"):
		return "string_pattern_mismatch", "String should match pattern '^[^/]+$'"
	case len(id) > maxIDLen:
		return "string_too_long", "String should have at most " + strconv.Itoa(maxIDLen) + " bytes"
	case !utf8.ValidString(id):
		return "string_unicode", "Input should be a valid string, unable to parse raw data as a unicode string"
	}
	return "", ""
}

// fieldProblem is the 422 entry for the string value of a request's field, where
// is "path" or "query".
func fieldProblem(where, field, typ, msg, value string) itemjson.Problem {
	input, _ := json.Marshal(strings.ToValidUTF8(value, "\uFFFD"))
	return itemjson.Problem{Type: typ, Loc: []any{where, field}, Msg: msg, Input: itemjson.Echo(input)}
}

// Conditional requests (RFC 9110 §13): entity tags, If-Match and
// If-None-Match.

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

// Request bodies.

// bufferPool holds request-body buffers, so that reading a body and building
// the item costs no allocation in the steady state.
var bufferPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 512)
	return &b
}}

// maxPooledBuffer keeps the pool from pinning the memory of rare large bodies.
const maxPooledBuffer = 64 << 10

// putBuffer returns b to the pool, unless it grew past maxPooledBuffer.
func putBuffer(b *[]byte) {
	if cap(*b) <= maxPooledBuffer {
		bufferPool.Put(b)
	}
}

// readBody appends r's body to buf, refusing bodies over max bytes whether
// or not they declare a length. A declared length over max is refused before
// any of the body is read (and before a 100 Continue is sent).
func readBody(r *http.Request, buf []byte, max int64) ([]byte, *failure) {
	if r.ContentLength > max {
		return buf, tooLarge(max)
	}
	for {
		buf = slices.Grow(buf, 1) // room to read into, or to see io.EOF
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case int64(len(buf)) > max:
			return buf, tooLarge(max)
		case err == io.EOF:
			return buf, nil
		case err != nil:
			return buf, unreadableBody
		}
	}
}

// tooLarge is the 413 for a body over max bytes.
func tooLarge(max int64) *failure {
	return &failure{
		status: http.StatusRequestEntityTooLarge,
		detail: "Request body too large: the limit is " + strconv.FormatInt(max, 10) + " bytes",
	}
}

// checkContentType refuses a body that is not declared as uncompressed UTF-8
// JSON, with a 415 that says what to send (the original answers such a body
// with a puzzling "field required" 422). Refusing them also means that a
// browser page, which can send text/plain, form and multipart bodies
// cross-site without asking, can never write.
func checkContentType(h http.Header) *failure {
	for _, enc := range h["Content-Encoding"] {
		for e := range strings.SplitSeq(enc, ",") {
			if !strings.EqualFold(strings.TrimSpace(e), "identity") {
				return unsupportedEncoding
			}
		}
	}
	types := h["Content-Type"]
	if len(types) == 0 || len(types) == 1 && types[0] == "application/json" {
		return nil
	}
	mt, params, err := mime.ParseMediaType(types[0])
	sub, isApp := strings.CutPrefix(mt, "application/")
	isJSON := isApp && (sub == "json" || len(sub) > len("+json") && strings.HasSuffix(sub, "+json"))
	if cs, ok := params["charset"]; len(types) > 1 || err != nil || !isJSON || ok && !strings.EqualFold(cs, "utf-8") {
		return unsupportedMediaType
	}
	return nil
}

// Answers.

// A failure is the answer to a request that cannot be served: its status and
// what the client may see: a short sentence or, for a 422, every problem
// found. Nothing else about the cause reaches a client.
type failure struct {
	status int
	detail any // a string, or []itemjson.Problem for a 422
}

// The failures whose detail never varies.
var (
	notFound             = &failure{status: http.StatusNotFound, detail: "Not Found"}
	notAllowed           = &failure{status: http.StatusMethodNotAllowed, detail: "Method Not Allowed"}
	preconditionFailed   = &failure{status: http.StatusPreconditionFailed, detail: "Precondition Failed"}
	unreadableBody       = &failure{status: http.StatusBadRequest, detail: "The request body could not be read"}
	unsupportedMediaType = &failure{status: http.StatusUnsupportedMediaType, detail: "Unsupported Media Type: send a JSON body with Content-Type: application/json"}
	unsupportedEncoding  = &failure{status: http.StatusUnsupportedMediaType, detail: "Unsupported Content-Encoding: send the body uncompressed"}
	internalError        = &failure{status: http.StatusInternalServerError, detail: "Internal Server Error"}
	unavailable          = &failure{status: http.StatusServiceUnavailable, detail: "Service Unavailable: the change could not be saved, and nothing was changed"}
)

// writeFailure sends f as {"detail": ...}.
func writeFailure(w http.ResponseWriter, f *failure) {
	b, err := json.Marshal(struct {
		Detail any `json:"detail"`
	}{f.detail})
	if err != nil {
		panic(err) // a bug: every input is built as valid JSON
	}
	writeJSON(w, f.status, b)
}

// Header values shared by every JSON answer. Assigning these slices directly
// saves Header.Set's allocation per header per request; net/http only reads
// them.
var (
	jsonContentType = []string{"application/json"}
	noSniff         = []string{"nosniff"}
)

// writeJSON sends body, which must be JSON, with the given status.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(status)
	// A failed write means the client has gone; there is no one to tell.
	_, _ = w.Write(body)
}
