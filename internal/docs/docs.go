// Package docs is the pages FastAPI users click first: Swagger UI at /docs
// and ReDoc at /redoc, both reading /openapi.json, with the same assets from
// the same CDN as FastAPI's by default.
//
// Why a package: the pages are HTML and a Content-Security-Policy, which the
// JSON service has no other use for. What it buys: unlike FastAPI's, the
// pages carry a policy under which scripts and styles come only from where
// the assets are, and the page talks to this server alone. What it stands in
// for: FastAPI's get_swagger_ui_html and get_redoc_html.
package docs

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
)

// Assets are the URLs that the pages load Swagger UI and ReDoc from,
// and their origin.
type Assets struct {
	origin, swaggerJS, swaggerCSS, redocJS string
}

// cdnAssets are FastAPI's: swagger-ui-dist 5 and redoc 2, from jsDelivr.
var cdnAssets = Assets{
	"https://cdn.jsdelivr.net",
	"https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js",
	"https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css",
	"https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js",
}

// AssetsFor returns where the pages load from, for -docs and
// -docs-assets: nil if they are off, FastAPI's CDN if base is "", else the
// files under base, named as in FastAPI's guide to self-hosting them.
func AssetsFor(on bool, base string) (*Assets, error) {
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
	return &Assets{u.Scheme + "://" + u.Host, base + "/swagger-ui-bundle.js", base + "/swagger-ui.css", base + "/redoc.standalone.js"}, nil
}

// swaggerInit starts Swagger UI with FastAPI's parameters, less the
// validator's badge, an image from elsewhere.
const swaggerInit = `SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", layout: "BaseLayout",
deepLinking: true, showExtensions: true, showCommonExtensions: true, validatorUrl: null,
presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]})`

// Pages returns the handlers of "GET /docs" and "GET /redoc". They stay out
// of openapi.json, as in FastAPI.
func (a *Assets) Pages() (swagger, redoc http.Handler) {
	head := `<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">`
	swaggerPage := head + `<title>itemsvc - Swagger UI</title><link rel="stylesheet" href="` + a.swaggerCSS +
		`"></head><body><div id="swagger-ui"></div><script src="` + a.swaggerJS + `"></script><script>` + swaggerInit + `</script></body></html>`
	redocPage := head + `<title>itemsvc - ReDoc</title><meta name="viewport" content="width=device-width, initial-scale=1">` +
		`</head><body><redoc spec-url="/openapi.json"></redoc><script src="` + a.redocJS + `"></script></body></html>`
	init := sha256.Sum256([]byte(swaggerInit)) // the one inline script
	csp := "default-src 'none'; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; script-src " + a.origin
	// ReDoc styles its elements inline (styled-components), and parses in a worker.
	return servePage(swaggerPage, csp+" 'sha256-"+base64.StdEncoding.EncodeToString(init[:])+"'; style-src "+a.origin),
		servePage(redocPage, csp+"; style-src "+a.origin+" 'unsafe-inline'; worker-src blob:")
}

// servePage serves page, an HTML page, under the policy csp.
func servePage(page, csp string) http.Handler {
	header := http.Header{"Content-Type": {"text/html; charset=utf-8"}, "Content-Security-Policy": {csp}, "X-Content-Type-Options": {"nosniff"}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		maps.Copy(w.Header(), header)
		_, _ = io.WriteString(w, page)
	})
}
