package main

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// NewServer returns the service's HTTP handler. The route list below is the
// whole API. Method-less patterns catch the methods a path does not serve, so
// that those answers are JSON with an Allow header rather than the mux's
// plain-text 405; the "/" pattern does the same for unknown paths.
func NewServer(store *Store, logger *slog.Logger, maxBody int64, accessLog bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /items", handleList(store))
	mux.Handle("/items", methodNotAllowed("GET, HEAD"))
	mux.Handle("GET /items/{id}", handleGet(store))
	mux.Handle("PUT /items/{id}", handlePut(store, maxBody))
	mux.Handle("DELETE /items/{id}", handleDelete(store))
	mux.Handle("/items/{id}", methodNotAllowed("GET, HEAD, PUT, DELETE"))
	mux.Handle("GET /healthz", handleHealth())
	mux.Handle("/healthz", methodNotAllowed("GET, HEAD"))
	mux.Handle("GET /openapi.json", handleOpenAPI())
	mux.Handle("/openapi.json", methodNotAllowed("GET, HEAD"))
	mux.Handle("/", handleNotFound())

	h := recoverPanics(rejectUncleanPaths(mux), logger)
	if accessLog {
		h = logAccess(h, logger)
	}
	return h
}

// handlePut creates or replaces an item: 201 if it is new, 200 if it
// replaced one, always with the item as stored.
func handlePut(store *Store, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, conds, f := itemRequest(r)
		if f != nil {
			writeFailure(w, f)
			return
		}
		buf := getBuffer()
		defer putBuffer(buf)
		body, f := readBody(r, (*buf)[:0], maxBody)
		*buf = body[:0]
		if f != nil {
			writeFailure(w, f)
			return
		}
		if len(body) > 0 {
			if f := checkContentType(r.Header); f != nil {
				writeFailure(w, f)
				return
			}
		}
		// The item, and then its JSON, go in the buffer's spare capacity: the
		// body is read while the item is encoded.
		it, problems := decodeItem(body[len(body):], body)
		if problems != nil {
			// RFC 9110 §13.2.1: preconditions are evaluated before the content
			// is processed, so a failed one wins over a bad body.
			if current, exists := store.Get(body[len(body):], id); conds.evaluate(current, exists, false) != 0 {
				writeFailure(w, errPreconditionFailed)
				return
			}
			writeFailure(w, &failure{status: http.StatusUnprocessableEntity, fields: problems})
			return
		}
		created, written := store.Put(id, it, func(current []byte, exists bool) bool {
			return conds.evaluate(current, exists, false) == 0
		})
		if !written {
			writeFailure(w, errPreconditionFailed)
			return
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		writeJSON(w, status, appendItemJSON(it[len(it):], it))
	})
}

// handleGet answers GET and HEAD for one item, with its entity tag, or 304 if
// the client's copy is current.
func handleGet(store *Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, conds, f := itemRequest(r)
		if f != nil {
			writeFailure(w, f)
			return
		}
		buf := getBuffer()
		defer putBuffer(buf)
		it, ok := store.Get((*buf)[:0], id)
		if !ok {
			writeFailure(w, errNotFound)
			return
		}
		tag := entityTag(it)
		w.Header()["Etag"] = []string{tag}
		switch conds.evaluateWithTag(tag, true, true) {
		case http.StatusNotModified:
			w.WriteHeader(http.StatusNotModified)
		case http.StatusPreconditionFailed:
			writeFailure(w, errPreconditionFailed)
		default:
			// The answer goes in the buffer's spare capacity, after the item.
			body := appendItemJSON(it[len(it):], it)
			*buf = body[:0]
			writeJSON(w, http.StatusOK, body)
		}
	})
}

// handleDelete removes an item: 204, or 404 if there is none.
func handleDelete(store *Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, conds, f := itemRequest(r)
		if f != nil {
			writeFailure(w, f)
			return
		}
		found, deleted := store.Delete(id, func(current []byte, exists bool) bool {
			return conds.evaluate(current, exists, false) == 0
		})
		switch {
		case !found:
			writeFailure(w, errNotFound)
		case !deleted:
			writeFailure(w, errPreconditionFailed)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
}

// handleList answers with every item in one JSON object keyed by id, with
// the keys sorted so that the answer is stable.
func handleList(store *Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entries := store.All()
		size := 2
		for _, e := range entries {
			size += len(e.ID) + len(e.Item) + len(`"":{"name":,"size":},`)
		}
		b := make([]byte, 0, size)
		b = append(b, '{')
		for i, e := range entries {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, e.ID)
			b = append(b, ':')
			b = appendItemJSON(b, e.Item)
		}
		b = append(b, '}')
		writeJSON(w, http.StatusOK, b)
	})
}

// healthBody is the answer to a health check.
var healthBody = []byte(`{"status":"ok"}`)

// handleHealth answers health checks; it does not touch the store, whose
// only failure mode is the process itself failing.
func handleHealth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, healthBody)
	})
}

// openAPIDoc is the OpenAPI 3.1 description of this API. Tests check it
// against the routes and the handlers' answers.
//
//go:embed openapi.json
var openAPIDoc []byte

// handleOpenAPI serves openAPIDoc.
func handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, openAPIDoc)
	})
}

// methodNotAllowed answers 405 for a path that exists, listing the methods it
// serves in Allow as RFC 9110 §15.5.6 requires.
func methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeFailure(w, errMethodNotAllowed)
	})
}

// handleNotFound answers 404 for every path the API does not have.
func handleNotFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeFailure(w, errNotFound)
	})
}

// maxIDLen bounds an id in bytes: room for any UUID, URL or path-like key,
// while a single id can never dominate memory.
const maxIDLen = 1024

// itemRequest returns what every request for one item carries, its id and
// its condition headers, or the failure that one of them gets.
func itemRequest(r *http.Request) (string, conditions, *failure) {
	id, f := itemID(r)
	if f != nil {
		return "", conditions{}, f
	}
	conds, f := parseConditions(r.Header)
	return id, conds, f
}

// itemID returns the request's {id}, already percent-decoded by the mux, or
// the failure that an unusable id gets.
func itemID(r *http.Request) (string, *failure) {
	id := r.PathValue("id")
	switch {
	case id == "" || strings.Contains(id, "/"):
		// An id is one path segment. The mux decodes %2F inside a segment,
		// which the original answers with 404, and so do we.
		return "", errNotFound
	case len(id) > maxIDLen:
		return "", pathProblem("string_too_long", "String should have at most "+strconv.Itoa(maxIDLen)+" bytes", id)
	case !utf8.ValidString(id):
		return "", pathProblem("string_unicode", "Input should be a valid string, unable to parse raw data as a unicode string", strings.ToValidUTF8(id, "\uFFFD"))
	}
	return id, nil
}

// pathProblem is the 422 for an id that fails validation.
func pathProblem(typ, msg, id string) *failure {
	input, _ := json.Marshal(id)
	return &failure{status: http.StatusUnprocessableEntity, fields: []fieldError{
		{Type: typ, Loc: []any{"path", "id"}, Msg: msg, Input: echo(input)},
	}}
}

// bufferPool holds request-body buffers, so that reading a body and building
// the item costs no allocation in the steady state.
var bufferPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 512)
	return &b
}}

// maxPooledBuffer keeps the pool from pinning the memory of rare large bodies.
const maxPooledBuffer = 64 << 10

func getBuffer() *[]byte { return bufferPool.Get().(*[]byte) }

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
	// Size the buffer for a declared length, +1 so the EOF read has room,
	// but only up to what a request must prove by sending it.
	if r.ContentLength > 0 && int64(cap(buf)) <= r.ContentLength && r.ContentLength < maxPooledBuffer {
		buf = make([]byte, 0, r.ContentLength+1)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > max {
			return buf, tooLarge(max)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, errUnreadableBody
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
		for _, e := range strings.Split(enc, ",") {
			if !strings.EqualFold(strings.TrimSpace(e), "identity") {
				return errUnsupportedEncoding
			}
		}
	}
	types := h["Content-Type"]
	switch {
	case len(types) == 0 || types[0] == "application/json" && len(types) == 1:
		return nil
	case len(types) > 1:
		return errUnsupportedMediaType
	}
	mt, params, err := mime.ParseMediaType(types[0])
	if err != nil {
		return errUnsupportedMediaType
	}
	sub, ok := strings.CutPrefix(mt, "application/")
	if !ok || sub != "json" && !(strings.HasSuffix(sub, "+json") && len(sub) > len("+json")) {
		return errUnsupportedMediaType
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return errUnsupportedMediaType
	}
	return nil
}

// A failure is the answer to a request that cannot be served: its status and
// what the client may see. detail is a short sentence; fields, for a 422,
// lists every problem found instead. Nothing else about the cause reaches a
// client.
type failure struct {
	status int
	detail string
	fields []fieldError
}

// A fieldError is one problem in a 422 answer, in the shape FastAPI (that
// is, pydantic) clients already parse.
type fieldError struct {
	Type  string          `json:"type"`
	Loc   []any           `json:"loc"`
	Msg   string          `json:"msg"`
	Input json.RawMessage `json:"input"`
}

// The failures whose detail never varies.
var (
	errNotFound             = &failure{status: http.StatusNotFound, detail: "Not Found"}
	errMethodNotAllowed     = &failure{status: http.StatusMethodNotAllowed, detail: "Method Not Allowed"}
	errPreconditionFailed   = &failure{status: http.StatusPreconditionFailed, detail: "Precondition Failed"}
	errUnreadableBody       = &failure{status: http.StatusBadRequest, detail: "The request body could not be read"}
	errUnsupportedMediaType = &failure{status: http.StatusUnsupportedMediaType, detail: "Unsupported Media Type: send a JSON body with Content-Type: application/json"}
	errUnsupportedEncoding  = &failure{status: http.StatusUnsupportedMediaType, detail: "Unsupported Content-Encoding: send the body uncompressed"}
	errInternal             = &failure{status: http.StatusInternalServerError, detail: "Internal Server Error"}
)

// writeFailure sends f as {"detail": ...}.
func writeFailure(w http.ResponseWriter, f *failure) {
	if f.fields == nil {
		b := appendJSONString([]byte(`{"detail":`), f.detail)
		writeJSON(w, f.status, append(b, '}'))
		return
	}
	b, err := json.Marshal(struct {
		Detail []fieldError `json:"detail"`
	}{f.fields})
	if err != nil {
		// Only a bug can get here: every Input is built as valid JSON.
		writeFailure(w, errInternal)
		return
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

// rejectUncleanPaths answers 404 for a path that the mux would redirect to
// a cleaned form, with a plain-text or empty body: a PUT is no request to
// redirect.
func rejectUncleanPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isCleanPath(r.URL.Path) {
			writeFailure(w, errNotFound)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isCleanPath reports whether the mux serves p as it is: p is rooted and has
// no empty, "." or ".." segment, though it may end in a slash. This is the
// mux's own test, made without a second path.Clean per request (the mux
// runs one anyway); FuzzCleanPath holds the two to the same answers.
func isCleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for rest := p[1:]; rest != ""; {
		var seg string
		seg, rest, _ = strings.Cut(rest, "/")
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// recoverPanics turns a panic in next into a logged error and a JSON 500, so
// that one bad request never takes the server down or shows a stack trace.
func recoverPanics(next http.Handler, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v) // net/http's own signal to drop the connection quietly
			}
			logger.Error("panic serving request", "method", r.Method, "path", r.URL.Path,
				"panic", v, "stack", string(debug.Stack()))
			writeFailure(w, errInternal)
		}()
		next.ServeHTTP(w, r)
	})
}

// logAccess logs one line per request after it is served.
func logAccess(next http.Handler, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.EscapedPath()),
			slog.Int("status", rec.status),
			slog.Int64("bytes", rec.bytes),
			slog.Duration("duration", time.Since(start)))
	})
}

// statusRecorder remembers the status and body size a handler sent, for the
// access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real ResponseWriter.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// entityTag returns the strong entity tag of it: a hash of its stored form,
// which maps one to one to its JSON. Equal items get equal tags, also across
// restarts, and no per-item state is stored. SHA-256 rather than a fast
// non-cryptographic hash, because a client that could make two items collide
// could make a conditional write succeed against the wrong item.
func entityTag(it []byte) string {
	sum := sha256.Sum256(it)
	var tag [2 + 22]byte // 16 bytes of hash in unpadded base64, quoted
	tag[0] = '"'
	base64.RawURLEncoding.Encode(tag[1:23], sum[:16])
	tag[23] = '"'
	return string(tag[:])
}

// conditions are a request's If-Match and If-None-Match fields (RFC 9110
// §13.1.1, §13.1.2), checked for syntax by parseConditions.
type conditions struct {
	ifMatch, ifNoneMatch       string
	hasIfMatch, hasIfNoneMatch bool
}

// parseConditions reads the condition fields of h; a malformed one is a 400
// rather than ignored, since ignoring it would turn a conditional write into
// an unconditional one.
func parseConditions(h http.Header) (conditions, *failure) {
	var c conditions
	var ok bool
	if c.ifMatch, c.hasIfMatch, ok = conditionField(h, "If-Match"); !ok {
		return c, &failure{status: http.StatusBadRequest, detail: "Malformed If-Match header: send * or a list of quoted entity tags"}
	}
	if c.ifNoneMatch, c.hasIfNoneMatch, ok = conditionField(h, "If-None-Match"); !ok {
		return c, &failure{status: http.StatusBadRequest, detail: "Malformed If-None-Match header: send * or a list of quoted entity tags"}
	}
	return c, nil
}

// conditionField returns the value of the field name in h, its lines joined
// into one list, whether the field is present, and whether it is well formed.
func conditionField(h http.Header, name string) (value string, present, ok bool) {
	lines, present := h[name]
	switch len(lines) {
	case 0:
		return "", present, true
	case 1:
		value = lines[0]
	default:
		value = strings.Join(lines, ",")
	}
	if strings.TrimSpace(value) == "*" {
		return "*", true, true
	}
	_, ok = matchTag(value, "", false)
	return value, true, ok
}

// evaluate applies the conditions to current (exists is false if there is
// no item) as RFC 9110 §13.2.2 orders them. It returns 0 if the request may
// go ahead, http.StatusNotModified if safe (a GET or HEAD) and If-None-Match
// matched, and http.StatusPreconditionFailed otherwise.
func (c conditions) evaluate(current []byte, exists, safe bool) int {
	if !c.hasIfMatch && !c.hasIfNoneMatch {
		return 0
	}
	var tag string
	if exists && (c.ifMatch != "*" && c.hasIfMatch || c.ifNoneMatch != "*" && c.hasIfNoneMatch) {
		tag = entityTag(current)
	}
	return c.evaluateWithTag(tag, exists, safe)
}

// evaluateWithTag is evaluate for an item whose tag is already known.
func (c conditions) evaluateWithTag(tag string, exists, safe bool) int {
	if c.hasIfMatch && !fieldMatches(c.ifMatch, tag, exists, false) {
		return http.StatusPreconditionFailed
	}
	if c.hasIfNoneMatch && fieldMatches(c.ifNoneMatch, tag, exists, true) {
		if safe {
			return http.StatusNotModified
		}
		return http.StatusPreconditionFailed
	}
	return 0
}

// fieldMatches reports whether a condition field matches the current item:
// "*" matches any item, a list matches if one of its tags does. If-Match
// compares strongly (a weak tag never matches), If-None-Match weakly.
func fieldMatches(field, tag string, exists, weak bool) bool {
	if !exists {
		return false
	}
	if field == "*" {
		return true
	}
	matched, _ := matchTag(field, tag, weak)
	return matched
}

// matchTag scans field as a list of entity tags (RFC 9110 §8.8.3, with the
// empty list elements §5.6.1 tells recipients to accept) and reports whether
// one of them equals tag (weak tags count only if weak is set), and whether
// the whole field is well formed.
func matchTag(field, tag string, weak bool) (matched, ok bool) {
	for i := 0; ; {
		for i < len(field) && (field[i] == ' ' || field[i] == '\t' || field[i] == ',') {
			i++
		}
		if i == len(field) {
			return matched, true
		}
		isWeak := strings.HasPrefix(field[i:], "W/")
		if isWeak {
			i += 2
		}
		start := i
		if i == len(field) || field[i] != '"' {
			return false, false
		}
		for i++; i < len(field) && field[i] != '"'; i++ {
			if c := field[i]; c < 0x21 || c == 0x7f {
				return false, false
			}
		}
		if i == len(field) {
			return false, false
		}
		i++
		if (!isWeak || weak) && field[start:i] == tag {
			matched = true
		}
		for i < len(field) && (field[i] == ' ' || field[i] == '\t') {
			i++
		}
		if i < len(field) && field[i] != ',' {
			return false, false
		}
	}
}
