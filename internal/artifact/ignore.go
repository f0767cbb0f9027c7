package artifact

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// ignoreFile names the file in the app directory listing what Pack leaves
// out.
const ignoreFile = ".skiffignore"

// ignoreRule is one pattern of a .skiffignore, split at '/'. A "**" segment
// matches any number of path segments.
type ignoreRule struct {
	segs    []string
	dirOnly bool
}

// ignoreRules are the patterns of a .skiffignore. The syntax is a subset of
// .gitignore that people already know: one pattern per line, '#' comments,
// a trailing '/' matches directories only, a leading or inner '/' anchors
// the pattern at the app directory, otherwise it matches at any depth;
// '*', '?', '[…]' and "**" as in git. Negation ('!') is not supported and
// is reported rather than silently taken literally.
type ignoreRules []ignoreRule

func parseIgnore(r io.Reader) (ignoreRules, error) {
	var rules ignoreRules
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		p := strings.TrimRight(sc.Text(), " \t\r")
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if strings.HasPrefix(p, "!") {
			return nil, fmt.Errorf("%s line %d: %q: negation with '!' is not supported; list only what to leave out", ignoreFile, line, p)
		}
		var rule ignoreRule
		if strings.HasSuffix(p, "/") {
			rule.dirOnly = true
			p = strings.TrimRight(p, "/")
		}
		anchored := strings.Contains(p, "/")
		p = strings.TrimLeft(p, "/")
		if p == "" {
			return nil, fmt.Errorf("%s line %d: pattern %q names the app directory itself", ignoreFile, line, sc.Text())
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == "" {
				continue
			}
			if seg != "**" {
				if _, err := path.Match(seg, ""); err != nil {
					return nil, fmt.Errorf("%s line %d: bad pattern %q: %w", ignoreFile, line, sc.Text(), err)
				}
			}
			rule.segs = append(rule.segs, seg)
		}
		if !anchored {
			rule.segs = append([]string{"**"}, rule.segs...)
		}
		rules = append(rules, rule)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", ignoreFile, err)
	}
	return rules, nil
}

// match reports whether rel, a slash-separated path relative to the app
// directory, is left out. Pack never descends into a left-out directory,
// so a path's parents need no checking here.
func (rules ignoreRules) match(rel string, isDir bool) bool {
	name := strings.Split(rel, "/")
	for _, r := range rules {
		if r.dirOnly && !isDir {
			continue
		}
		if matchSegs(r.segs, name) {
			return true
		}
	}
	return false
}

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if matchSegs(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}
