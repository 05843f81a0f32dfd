package config

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder walks a YAML node tree alongside the Go schema so that every
// problem is reported with its key path (routes[2].methods) rather than the
// line-only messages of yaml.v3, and so that unknown keys are all found at
// once instead of stopping at the first.
type decoder struct {
	getenv func(string) string
	errs   []error
	// budget bounds the nodes visited: following aliases by hand would
	// otherwise expand a "billion laughs" document exponentially.
	budget int
}

// maxNodes is far above any real config and far below a slow one.
const maxNodes = 100000

var errTooComplex = fmt.Errorf("document has too many nodes or aliases (over %d); refusing to expand it", maxNodes)

func (d *decoder) fail(path, format string, args ...any) {
	d.errs = append(d.errs, fmt.Errorf("%s: %s", pathOrRoot(path), fmt.Sprintf(format, args...)))
}

func pathOrRoot(p string) string {
	if p == "" {
		return "(top level)"
	}
	return p
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if d.budget++; d.budget > maxNodes {
		if d.budget == maxNodes+1 {
			d.errs = append(d.errs, errTooComplex)
		}
		return
	}
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		d.decode(n.Content[0], v, path)
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value keeps the default
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
		return
	}
	if v.Type() == claimValuesType {
		d.decodeClaimValues(n, v, path)
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshaler) {
		s, ok := d.scalar(n, path)
		if !ok {
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.fail(path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(path, "expected a mapping, got %s", describe(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(n.Content[i+1], ev, join(path, k))
			m.SetMapIndex(reflect.ValueOf(k), ev)
		}
		v.Set(m)
	case reflect.String:
		if s, ok := d.scalar(n, path); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		s, ok := d.scalar(n, path)
		if !ok {
			return
		}
		b, err := strconv.ParseBool(s)
		if err != nil {
			d.fail(path, "expected true or false, got %q", s)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		s, ok := d.scalar(n, path)
		if !ok {
			return
		}
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			d.fail(path, "expected a whole number, got %q", s)
			return
		}
		v.SetInt(i)
	default:
		d.fail(path, "unsupported field type %s", v.Type())
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, "expected a mapping, got %s", describe(n))
		return
	}
	fields := fieldsByTag(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i].Value
		p := join(path, key)
		idx, ok := fields[key]
		if !ok {
			d.fail(p, "unknown key (line %d); known keys: %s", n.Content[i].Line, knownKeys(v.Type()))
			continue
		}
		if seen[key] {
			d.fail(p, "duplicate key (line %d)", n.Content[i].Line)
			continue
		}
		seen[key] = true
		d.decode(n.Content[i+1], v.Field(idx), p)
	}
}

// scalar returns the node's value with ${VAR} and ${VAR:-default} expanded.
func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.fail(path, "expected a single value, got %s", describe(n))
		return "", false
	}
	s, err := expand(n.Value, d.getenv)
	if err != nil {
		d.fail(path, "%v", err)
		return "", false
	}
	return s, true
}

// expand replaces ${VAR} and ${VAR:-default}; "$$" is a literal "$". A lone
// "$" not followed by "{" is kept, so bcrypt hashes ($2a$12$...) need no escaping.
func expand(s string, getenv func(string) string) (string, error) {
	if !strings.Contains(s, "${") && !strings.Contains(s, "$$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("unterminated ${ in %q", s)
			}
			expr := s[i+2 : i+end]
			name, def, hasDef := strings.Cut(expr, ":-")
			if !validEnvName(name) {
				return "", fmt.Errorf("invalid variable name %q in ${...}", name)
			}
			val := getenv(name)
			if val == "" && hasDef {
				val = def
			}
			b.WriteString(val)
			i += end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func fieldsByTag(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag != "" && tag != "-" {
			m[tag] = i
		}
	}
	return m
}

func knownKeys(t reflect.Type) string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return strings.Join(keys, ", ")
}
