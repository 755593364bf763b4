package main

// This file holds the pages FastAPI users click first: Swagger UI at /docs
// and ReDoc at /redoc, both reading /openapi.json, with the same assets from
// the same CDN as FastAPI's by default. Unlike FastAPI's, they carry a
// Content-Security-Policy: scripts and styles come only from where the
// assets are, and the page talks to this server alone.

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
)

// docsAssets are the URLs that the pages load Swagger UI and ReDoc from,
// and their origin.
type docsAssets struct {
	origin, swaggerJS, swaggerCSS, redocJS string
}

// cdnAssets are FastAPI's: swagger-ui-dist 5 and redoc 2, from jsDelivr.
var cdnAssets = docsAssets{
	"https://cdn.jsdelivr.net",
	"https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js",
	"https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css",
	"https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js",
}

// docsAssetsFor returns where the pages load from, for -docs and
// -docs-assets: nil if they are off, FastAPI's CDN if base is "", else the
// files under base, named as in FastAPI's guide to self-hosting them.
func docsAssetsFor(on bool, base string) (*docsAssets, error) {
	u, err := url.Parse(base)
	switch {
	case base != "" && (err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https"):
		return nil, fmt.Errorf("-docs-assets must be an http or https URL, got %q", base)
	case !on:
		return nil, nil
	case base == "":
		return &cdnAssets, nil
	}
	base = strings.TrimSuffix(u.String(), "/") // escaped, so that it cannot end an HTML attribute
	return &docsAssets{u.Scheme + "://" + u.Host, base + "/swagger-ui-bundle.js", base + "/swagger-ui.css", base + "/redoc.standalone.js"}, nil
}

// swaggerInit starts Swagger UI with FastAPI's parameters, less the
// validator's badge, an image from elsewhere.
const swaggerInit = `SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", layout: "BaseLayout",
deepLinking: true, showExtensions: true, showCommonExtensions: true, validatorUrl: null,
presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]})`

// docsRoutes returns the pages' routes, none if a is nil. They stay out of
// openapi.json, as in FastAPI.
func docsRoutes(a *docsAssets) []route {
	if a == nil {
		return nil
	}
	head := `<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">`
	swagger := head + `<title>itemsvc - Swagger UI</title><link rel="stylesheet" href="` + a.swaggerCSS +
		`"></head><body><div id="swagger-ui"></div><script src="` + a.swaggerJS + `"></script><script>` + swaggerInit + `</script></body></html>`
	redoc := head + `<title>itemsvc - ReDoc</title><meta name="viewport" content="width=device-width, initial-scale=1">` +
		`</head><body><redoc spec-url="/openapi.json"></redoc><script src="` + a.redocJS + `"></script></body></html>`
	init := sha256.Sum256([]byte(swaggerInit)) // the one inline script
	csp := "default-src 'none'; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; script-src " + a.origin
	return []route{
		{"GET /docs", servePage([]byte(swagger), csp+" 'sha256-"+base64.StdEncoding.EncodeToString(init[:])+"'; style-src "+a.origin)},
		// ReDoc styles its elements inline (styled-components), and parses in a worker.
		{"GET /redoc", servePage([]byte(redoc), csp+"; style-src "+a.origin+" 'unsafe-inline'; worker-src blob:")},
	}
}

// servePage serves page, an HTML page, under the policy csp.
func servePage(page []byte, csp string) http.Handler {
	header := http.Header{"Content-Type": {"text/html; charset=utf-8"}, "Content-Security-Policy": {csp}, "X-Content-Type-Options": noSniff}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		maps.Copy(w.Header(), header)
		_, _ = w.Write(page)
	})
}
