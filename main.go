// Command itemsvc serves an in-memory item store over HTTP: a Go port of
// FastAPI's "Additional Status Codes" example. PUT /items/{id} answers 200
// when it replaces an item and 201 when it creates one.
//
// This file holds the process: its flags, the http.Server with its timeouts
// and limits, graceful shutdown, and NewServer, which puts the routes of
// handler.go in a mux and wraps it in the middleware, CORS among them.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"itemsvc/internal/docs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
)

// Server timeouts. Each bounds how long one client can hold a connection and
// its goroutine, so that slow or stalled clients cannot exhaust the server.
const (
	// readHeaderTimeout cuts off clients that trickle their headers
	// (slowloris); any real client sends them in one packet.
	readHeaderTimeout = 5 * time.Second
	// readTimeout bounds the whole request, body included: a maximal 1 MiB
	// body still arrives in time at about 40 KiB/s.
	readTimeout = 30 * time.Second
	// writeTimeout bounds the handler and the response together: answers are
	// small, except a full listing, which still has 30 s to drain.
	writeTimeout = 30 * time.Second
	// idleTimeout closes keep-alive connections left unused, so that idle
	// clients do not hold file descriptors forever.
	idleTimeout = 120 * time.Second
	// shutdownTimeout bounds how long in-flight requests get to finish after
	// SIGINT or SIGTERM; comfortably under the 30 s most supervisors wait
	// before they kill.
	shutdownTimeout = 10 * time.Second
	// maxHeaderBytes refuses oversized request headers with 431. Real
	// requests need a few hundred bytes; net/http's default is 1 MiB.
	maxHeaderBytes = 64 << 10
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After -h the usage is printed; asking for it is not a failure.
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "itemsvc:", err)
		stop()
		os.Exit(1)
	}
}

// run parses args and serves until ctx is cancelled (see serve). Logs go to
// stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	flags := flag.NewFlagSet("itemsvc", flag.ContinueOnError)
	flags.SetOutput(stderr)
	addr := flags.String("addr", cmp.Or(getenv("ADDR"), "127.0.0.1:8000"), "listen address; $ADDR sets the default")
	maxBody := flags.Int64("max-body", 1<<20, "largest request body accepted, in bytes")
	seed := flags.Bool("seed", true, `start with the example's items "foo" and "bar"`)
	data := flags.String("data", getenv("DATA"), "keep the items in this file, not only in memory; $DATA sets the default")
	accessLog := flags.Bool("access-log", true, "log one line per request")
	logFormat := flags.String("log-format", "text", "log format: text or json")
	docsOn := flags.Bool("docs", true, "serve Swagger UI at /docs and ReDoc at /redoc")
	docsBase := flags.String("docs-assets", "", "load the docs pages' JavaScript and CSS from this URL, not FastAPI's CDN: it holds swagger-ui-bundle.js, swagger-ui.css and redoc.standalone.js")
	corsList := flags.String("cors-origins", getenv("CORS_ORIGINS"), "let pages from these origins call the API from a browser: a comma-separated list of scheme://host[:port], or *; $CORS_ORIGINS sets the default")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", flags.Args())
	}
	if *maxBody <= 0 {
		return fmt.Errorf("-max-body must be positive, got %d", *maxBody)
	}
	logHandler, ok := map[string]slog.Handler{
		"text": slog.NewTextHandler(stderr, nil),
		"json": slog.NewJSONHandler(stderr, nil),
	}[*logFormat]
	if !ok {
		return fmt.Errorf("-log-format must be text or json, got %q", *logFormat)
	}
	logger := slog.New(logHandler)
	pages, err := docs.AssetsFor(*docsOn, *docsBase)
	if err != nil {
		return err
	}
	cors, err := parseOrigins(*corsList)
	if err != nil {
		return err
	}

	store, err := OpenStore(*data, *seed, logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return errors.Join(err, store.Close())
	}
	srv := newHTTPServer(NewServer(store, logger, *maxBody, *accessLog, pages, cors), logger)
	return errors.Join(serve(ctx, srv, ln, logger), store.Close())
}

// newHTTPServer returns the http.Server for h, with the timeouts and limits
// above.
func newHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// serve runs srv on ln until ctx is done, then shuts down gracefully: it
// stops accepting, lets in-flight requests finish (for at most
// shutdownTimeout), and returns nil.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, logger *slog.Logger) error {
	logger.Info("listening", "addr", ln.Addr().String())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}

	logger.Info("shutting down", "timeout", shutdownTimeout)
	// ctx is already cancelled; the wait for in-flight requests needs a
	// deadline of its own.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("stopped")
	return nil
}

// NewServer returns the service's HTTP handler: the routes, a JSON 405 with
// an Allow header for the other methods on their paths (the mux's own is
// plain text), a JSON 404 for every other path, and the middleware. Pages
// from the origins of cors may call it from a browser; nil allows none.
func NewServer(store *Store, logger *slog.Logger, maxBody int64, accessLog bool, pages *docs.Assets, cors corsOrigins) http.Handler {
	mux := http.NewServeMux()
	allow := map[string][]string{} // path → the methods it serves
	for _, rt := range routes(store, maxBody, pages) {
		mux.Handle(rt.pattern, rt.handler)
		method, path, _ := strings.Cut(rt.pattern, " ")
		if method == http.MethodGet {
			method += ", " + http.MethodHead // the mux serves HEAD with GET
		}
		allow[path] = append(allow[path], method)
	}
	// The 405s list the methods a path serves in Allow, as RFC 9110 §15.5.6
	// requires.
	for path, methods := range allow {
		methods := strings.Join(methods, ", ")
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", methods)
			writeFailure(w, notAllowed)
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { writeFailure(w, notFound) })

	h := rejectUncleanPaths(mux)
	if cors != nil {
		h = allowCORS(h, cors, func(r *http.Request) string {
			_, path := mux.Handler(r) // the path of the 405 route, since no route serves OPTIONS
			return strings.Join(allow[path], ", ")
		})
	}
	h = recoverPanics(h, logger)
	if accessLog {
		h = logAccess(h, logger)
	}
	return h
}

// The middleware, which NewServer chains around the mux.

// rejectUncleanPaths answers 404 for a path that the mux would redirect to
// a cleaned form, with a plain-text or empty body: a PUT is no request to
// redirect. The test is the mux's own, made in one pass rather than with a
// second path.Clean (the mux runs one anyway), which cost twice as much under
// callgrind; FuzzCleanPath holds the two to the same answers.
func rejectUncleanPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		clean := p != "" && p[0] == '/' // and no empty, "." or ".." segment but a last empty one
		for rest := strings.TrimPrefix(p, "/"); clean && rest != ""; {
			var seg string
			seg, rest, _ = strings.Cut(rest, "/")
			clean = seg != "" && seg != "." && seg != ".."
		}
		if !clean {
			writeFailure(w, notFound)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a panic in next into a logged error and a JSON 500, so
// that one bad request never takes the server down or shows a stack trace.
func recoverPanics(next http.Handler, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v) // net/http's own signal to drop the connection quietly
				}
				logger.Error("panic serving request", "method", r.Method, "path", r.URL.Path,
					"panic", v, "stack", string(debug.Stack()))
				writeFailure(w, internalError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// corsOrigins maps the origins whose pages may call the API from a browser
// (CORS, Fetch §3.2), as browsers send them in Origin, to the
// Access-Control-Allow-Origin they get: the origin itself, or "*" for "*",
// which stands for any.
type corsOrigins map[string]string

// parseOrigins reads -cors-origins: a comma-separated list of origins, or
// "*"; none if it is empty.
func parseOrigins(list string) (corsOrigins, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	origins := corsOrigins{}
	for o := range strings.SplitSeq(list, ",") {
		if o = strings.TrimSpace(o); o != "*" && !isOrigin(o) {
			return nil, fmt.Errorf("-cors-origins: %q is not an origin as browsers send it: write scheme://host[:port] in lower case, as in http://localhost:5173, or *", o)
		}
		origins[o] = o
	}
	return origins, nil
}

// isOrigin reports whether o is an http or https origin as browsers send
// it: scheme://host[:port], in lower case, with nothing after.
func isOrigin(o string) bool {
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Hostname() != "" &&
		u.Scheme+"://"+u.Host == o && strings.ToLower(o) == o
}

// Header values for answers to requests with Origin: Vary on each of them,
// Access-Control-Expose-Headers on those from an allowed origin.
var (
	varyOrigin     = []string{"Origin"}
	exposedHeaders = []string{"ETag, Link"} // so that scripts can send If-Match and follow pages
)

// allowCORS lets pages from origins read the answers of next, errors too,
// and answers their preflights; methodsOf returns the methods a request's
// path serves, "" if none. A request without Origin is no browser's
// cross-origin request, and passes untouched. The docs pages are left out:
// they are for visitors, not scripts. No credentials are allowed: there are
// none.
func allowCORS(next http.Handler, origins corsOrigins, methodsOf func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header["Origin"]
		if origin == nil || r.URL.Path == "/docs" || r.URL.Path == "/redoc" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header()["Vary"] = varyOrigin                     // the answer differs by origin
		allowed := cmp.Or(origins["*"], origins[origin[0]]) // "" grants nothing
		if r.Method == http.MethodOptions && r.Header["Access-Control-Request-Method"] != nil {
			if methods := methodsOf(r); methods != "" {
				preflight(w, allowed, methods)
				return
			}
		}
		if allowed != "" {
			w.Header()["Access-Control-Allow-Origin"] = []string{allowed}
			w.Header()["Access-Control-Expose-Headers"] = exposedHeaders
		}
		next.ServeHTTP(w, r)
	})
}

// preflight answers a CORS preflight on a path that serves methods: 204
// with the grant, against which the browser checks the method and headers
// it means to send; or, if the origin is not allowed (allowed is ""), a JSON
// 400 that grants nothing.
func preflight(w http.ResponseWriter, allowed, methods string) {
	if allowed == "" {
		writeFailure(w, &failure{status: http.StatusBadRequest, detail: "Disallowed CORS origin"})
		return
	}
	h := w.Header()
	h["Access-Control-Allow-Origin"] = []string{allowed}
	h["Access-Control-Allow-Methods"] = []string{methods}
	h["Access-Control-Allow-Headers"] = []string{"Content-Type, If-Match, If-None-Match"}
	h["Access-Control-Max-Age"] = []string{"600"} // seconds, as in FastAPI's CORSMiddleware
	w.WriteHeader(http.StatusNoContent)
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
