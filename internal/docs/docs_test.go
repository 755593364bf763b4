package docs

import "testing"

// TestDocsAssetsFor checks how -docs and -docs-assets choose the assets.
func TestDocsAssetsFor(t *testing.T) {
	self := &Assets{"http://assets.example", "http://assets.example/s%22/swagger-ui-bundle.js",
		"http://assets.example/s%22/swagger-ui.css", "http://assets.example/s%22/redoc.standalone.js"}
	tests := []struct {
		on   bool
		base string
		want *Assets // nil for off, or on an error
		err  bool
	}{
		{true, "", &cdnAssets, false},
		{false, "", nil, false},
		{true, `http://assets.example/s"/`, self, false},
		{false, "http://assets.example/", nil, false},
		{true, "assets.example/static", nil, true},
		{false, "ftp://assets.example/", nil, true},
	}
	for _, tt := range tests {
		got, err := AssetsFor(tt.on, tt.base)
		if (err != nil) != tt.err || (got == nil) != (tt.want == nil) || got != nil && *got != *tt.want {
			t.Errorf("AssetsFor(%v, %q) = %+v, %v; want %+v, error %v", tt.on, tt.base, got, err, tt.want, tt.err)
		}
	}
}
