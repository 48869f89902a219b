package ui

import (
	"embed"
	"html/template"
	"io/fs"
	"net/http"
)

// The page is plain HTML, CSS and JavaScript; assets/vendor holds the
// built files of the npm packages it uses (scripts/ui-assets.sh).
//
//go:embed assets
var assets embed.FS

var (
	static  = mustSub(assets, "assets")
	index   = template.Must(template.ParseFS(assets, "assets/index.html"))
	statics = http.StripPrefix("/ui/", http.FileServerFS(static))
)

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// csp lets the page load only its own files and talk only to its own
// origin (WebSockets included), and keeps it out of frames.
const csp = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// servePage answers /ui/...: the page, with the session's CSRF token in it,
// and its assets.
func servePage(w http.ResponseWriter, r *http.Request, sess Session) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/ui/" || r.URL.Path == "/ui/index.html" {
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		index.Execute(w, struct{ CSRF string }{sess.CSRF})
		return
	}
	h.Set("Cache-Control", "no-cache")
	statics.ServeHTTP(w, r)
}
