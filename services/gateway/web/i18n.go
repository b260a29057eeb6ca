package web

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"
)

//go:embed locales/*.json
var localeFS embed.FS

// Languages the UI speaks, English first: it is complete and the fallback.
var languages = []language.Tag{language.English, language.French, language.Spanish}

// langCookie keeps the language a user chose in this browser.
const langCookie = "eva_lang"

// catalog holds the message catalogs (locales/<lang>.json, go-i18n).
type catalog struct {
	bundle  *i18n.Bundle
	matcher language.Matcher
	// ids lists the message ids of each language, for completeness checks.
	ids map[string][]string
}

func newCatalog() (*catalog, error) {
	b := i18n.NewBundle(language.English)
	b.RegisterUnmarshalFunc("json", json.Unmarshal)
	c := &catalog{bundle: b, matcher: language.NewMatcher(languages), ids: map[string][]string{}}
	for _, tag := range languages {
		name := "locales/" + tag.String() + ".json"
		mf, err := b.LoadMessageFileFS(localeFS, name)
		if err != nil {
			return nil, fmt.Errorf("web: catalog %s: %w", name, err)
		}
		for _, m := range mf.Messages {
			c.ids[tag.String()] = append(c.ids[tag.String()], m.ID)
		}
		slices.Sort(c.ids[tag.String()])
	}
	return c, nil
}

// choose picks the language: the user's choice (cookie), else the best
// match of Accept-Language, else English.
func (c *catalog) choose(r *http.Request) string {
	if ck, err := r.Cookie(langCookie); err == nil && supported(ck.Value) {
		return ck.Value
	}
	tags, _, err := language.ParseAcceptLanguage(r.Header.Get("Accept-Language"))
	if err != nil || len(tags) == 0 {
		return "en"
	}
	_, i, conf := c.matcher.Match(tags...)
	if conf == language.No {
		return "en"
	}
	return languages[i].String()
}

func supported(lang string) bool {
	return slices.ContainsFunc(languages, func(t language.Tag) bool { return t.String() == lang })
}

// loc translates into one language.
type loc struct {
	Lang string
	l    *i18n.Localizer
}

func (c *catalog) loc(lang string) *loc {
	return &loc{Lang: lang, l: i18n.NewLocalizer(c.bundle, lang)}
}

// T is the message id translated, with pairs of names and values for its
// template; a "Count" value also picks the plural form. A missing message
// is the id itself, which the catalog tests forbid.
func (l *loc) T(id string, pairs ...any) string {
	lc := &i18n.LocalizeConfig{MessageID: id}
	if len(pairs) > 0 {
		data := make(map[string]any, len(pairs)/2)
		for i := 0; i+1 < len(pairs); i += 2 {
			k, _ := pairs[i].(string)
			data[k] = pairs[i+1]
			if k == "Count" {
				lc.PluralCount = pairs[i+1]
			}
		}
		lc.TemplateData = data
	}
	s, err := l.l.Localize(lc)
	if err != nil || s == "" {
		return id
	}
	return s
}

// Has reports whether the catalog knows id (in any language).
func (l *loc) Has(id string) bool {
	_, err := l.l.Localize(&i18n.LocalizeConfig{MessageID: id})
	return err == nil
}

// Maybe is T for ids made from data (a status, a category, an event
// type): an unknown one is shown as it came.
func (l *loc) Maybe(prefix, value string) string {
	id := prefix + value
	if l.Has(id) {
		return l.T(id)
	}
	return value
}

// localeFiles lists the catalog files, for tests.
func localeFiles() ([]string, error) {
	var out []string
	err := fs.WalkDir(localeFS, "locales", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".json") {
			out = append(out, path.Base(p))
		}
		return err
	})
	return out, err
}
