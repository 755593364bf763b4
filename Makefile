# itemsvc: the two commands a newcomer needs are `make run` and `make test`.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
ADDR        ?= 127.0.0.1:8000
BENCHTIME   ?= 1s
FUZZTIME    ?= 60s
REDOCLY     ?= @redocly/cli@2.77.0
SWAGGER_UI  ?= swagger-ui-dist@5.35.0
REDOC       ?= redoc@2.5.4

.PHONY: run build test lint bench fuzz lint-openapi browser-test load

## run: build, then start the service with the seeded items on $(ADDR)
run: build
	./itemsvc -addr $(ADDR)

## build: build ./itemsvc
build:
	$(GO) build -o itemsvc .

## test: formatting, vet, staticcheck, then every test under the race detector
test: lint
	$(GO) test -race -count=1 ./...

## lint: gofmt (fails if it lists a file), go vet, staticcheck (pinned)
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -l lists:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## bench: in-process benchmarks of the real handler
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

## fuzz: each fuzz target for $(FUZZTIME); make test already runs their seed corpora
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzCleanPath$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeItem$$' -fuzztime $(FUZZTIME) ./internal/itemjson
	$(GO) test -run '^$$' -fuzz '^FuzzParseJSONInt$$' -fuzztime $(FUZZTIME) ./internal/itemjson
	$(GO) test -run '^$$' -fuzz '^FuzzCompactItem$$' -fuzztime $(FUZZTIME) ./internal/itemjson
	$(GO) test -run '^$$' -fuzz '^FuzzParseRecord$$' -fuzztime $(FUZZTIME) ./internal/journal

## lint-openapi: validate openapi.json with Redocly's linter (pinned; needs Node.js and npm)
lint-openapi:
	npx --yes $(REDOCLY) lint --config api/redocly.yaml api/openapi.json

## browser-test: /docs and /redoc in headless Chromium (installed if missing), with Swagger UI and
## ReDoc self-hosted from npm (pinned) through -docs-assets; screenshots go to build/
browser-test:
	command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; }
	rm -rf build/assets && mkdir -p build/assets
	cd build/assets && npm pack --silent $(SWAGGER_UI) $(REDOC) >/dev/null && \
	  tar xzf swagger-ui-dist-*.tgz --strip-components=1 package/swagger-ui-bundle.js package/swagger-ui.css && \
	  tar xzf redoc-*.tgz --strip-components=2 package/bundles/redoc.standalone.js && rm ./*.tgz
	BROWSER_TEST=1 DOCS_ASSETS_DIR=$(CURDIR)/build/assets DOCS_SCREENSHOTS=$(CURDIR)/build $(GO) test -count=1 -run '^Test(Docs|CORS)InBrowser$$' -v .
	@echo "screenshots: build/docs.png build/redoc.png"

## load: the shared load harness against a fresh build, instruction counts, paired runs, -data, pages (see bench/README.md)
load:
	bench/load.sh throughput
	bench/load.sh rss
	bench/load.sh 1m
	bench/load.sh instr
	bench/load.sh paired
	bench/load.sh durable
	bench/load.sh pages
