package web

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/go-chi/chi/v5"
)

// assets are the UI's static files, embedded, each served under a name
// that carries a hash of its content (app.3f9c1e2a.css), so that browsers
// keep them for a year and a new build is fetched at once.
type assets struct {
	byName map[string]string // app.css → app.3f9c1e2a.css
	files  map[string]asset  // app.3f9c1e2a.css → content
}

type asset struct {
	data []byte
	ct   string
}

func newAssets(fsys fs.FS) (*assets, error) {
	a := &assets{byName: map[string]string{}, files: map[string]asset{}}
	err := fs.WalkDir(fsys, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		name := path.Base(p)
		ext := path.Ext(name)
		sum := sha256.Sum256(data)
		hashed := strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:4]) + ext
		ct := mime.TypeByExtension(ext)
		if ext == ".js" {
			ct = "text/javascript; charset=utf-8"
		}
		a.byName[name] = hashed
		a.files[hashed] = asset{data: data, ct: ct}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: assets: %w", err)
	}
	return a, nil
}

// URL is the path of a static file by its plain name.
func (a *assets) URL(name string) string { return "/static/" + a.byName[name] }

// serve answers GET /static/{name}.
func (a *assets) serve(w http.ResponseWriter, r *http.Request) {
	f, ok := a.files[chi.URLParam(r, "name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.ct)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	_, _ = w.Write(f.data)
}
