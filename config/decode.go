package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"
)

// maxFileBytes bounds a configuration file. Real files are a few KB; the
// limit keeps a wrong path (a log file, a device) from being read whole.
const maxFileBytes = 1 << 20

// bodyTarget is implemented by blocks whose body layout depends on their
// label, such as driver "nginx" { ... }. It returns the struct to decode the
// body into, or false when the label is not one it knows (Validate reports
// that, so the decoder skips the body).
type bodyTarget interface {
	bodyTarget() (any, bool)
}

// defaulter is implemented by repeatable and optional blocks whose keys
// have defaults, such as service "NAME" { ... }. A new block starts from
// them, as a role struct starts from its Default function, so a key the
// block leaves out keeps its default.
type defaulter interface {
	setDefaults()
}

// decoder turns an hclsyntax body into a role struct that already holds
// the role's defaults. gohcl.DecodeBody would do most of this, but it
// replaces optional blocks with zero values (losing the defaults inside
// them) and treats a block held by value as required. So the decoder walks
// the syntax tree itself, matches keys to the same `hcl` struct tags gohcl
// reads, decodes each value the way gohcl.DecodeExpression does, and
// records the source range of every key it sees so problems can name the
// line.
type decoder struct {
	role  string
	src   []byte
	s     *sources
	probs Problems
}

// parseInto parses src and decodes it into cfg, a pointer to a role struct
// holding the defaults. It returns false when the file is not valid HCL
// syntax; cfg is then untouched and the problems are all syntax errors.
func parseInto(role, filename string, src []byte, cfg any, s *sources) (Problems, bool) {
	*s = sources{file: filename, ranges: make(map[string]hcl.Range)}
	if len(src) > maxFileBytes {
		return Problems{{Pos: filename, Msg: fmt.Sprintf("the file is %d bytes; a configuration file may be at most %d bytes", len(src), maxFileBytes)}}, false
	}
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return diagProblems(filename, diags), false
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		// hclsyntax.ParseConfig always returns its own body type.
		return Problems{{Pos: filename, Msg: "the file could not be read as HCL native syntax"}}, false
	}
	d := &decoder{role: role, src: src, s: s}
	d.body(body, "", reflect.ValueOf(cfg).Elem())
	return d.probs, true
}

// diagProblems converts HCL syntax diagnostics into problems.
func diagProblems(filename string, diags hcl.Diagnostics) Problems {
	var ps Problems
	for _, diag := range diags {
		if diag.Severity != hcl.DiagError {
			continue
		}
		p := Problem{Pos: filename, Msg: diag.Summary}
		if diag.Detail != "" {
			p.Msg += ": " + diag.Detail
		}
		if diag.Subject != nil {
			p.Pos, p.Line = formatRange(*diag.Subject), diag.Subject.Start.Line
		}
		ps = append(ps, p)
	}
	return ps
}

// add records a problem at range r.
func (d *decoder) add(r hcl.Range, path, value, msg string) {
	d.probs = append(d.probs, Problem{Pos: formatRange(r), Line: r.Start.Line, Path: path, Value: value, Msg: msg})
}

// body decodes the attributes and blocks of b into the struct v.
func (d *decoder) body(b *hclsyntax.Body, path string, v reflect.Value) {
	tags := structTags(v.Type())

	attrs := make([]*hclsyntax.Attribute, 0, len(b.Attributes))
	for _, a := range b.Attributes {
		attrs = append(attrs, a)
	}
	// Map order is random; decode in file order so problems are stable.
	sort.Slice(attrs, func(i, j int) bool { return attrs[i].SrcRange.Start.Byte < attrs[j].SrcRange.Start.Byte })
	for _, a := range attrs {
		p := joinPath(path, a.Name)
		f, ok := tags.attrs[a.Name]
		switch {
		case ok:
			d.attr(a, p, v.Field(f.Index[0]), f.Tag.Get("redact") == "true")
		case tags.blocks[a.Name] != nil:
			d.add(a.NameRange, p, "", fmt.Sprintf("is a block, not a setting; write it as %s { ... }", a.Name))
		default:
			d.unknown(a.NameRange, path, a.Name, tags)
		}
	}

	seen := make(map[string]hcl.Range)
	for _, blk := range b.Blocks {
		p := joinPath(path, blk.Type)
		f, ok := tags.blocks[blk.Type]
		switch {
		case ok:
			d.block(blk, p, v.Field(f.Index[0]), seen)
		case tags.attrs[blk.Type] != nil:
			d.add(blk.TypeRange, p, "", fmt.Sprintf("is a setting, not a block; write it as %s = value", blk.Type))
		default:
			d.unknown(blk.TypeRange, path, blk.Type, tags)
		}
	}
}

// attr decodes one attribute into the field f. A value that does not decode
// leaves the default in place and records a problem.
func (d *decoder) attr(a *hclsyntax.Attribute, path string, f reflect.Value, secret bool) {
	plain := plainValue
	if f.Kind() == reflect.Map {
		plain = plainObject
	}
	if r, why, ok := plain(a.Expr); !ok {
		// r is the offending part, which in a multi-line list is the
		// line to fix.
		d.add(r, path, d.text(r, secret), "is not a plain value: "+why)
		return
	}
	val, diags := a.Expr.Value(nil)
	if diags.HasErrors() || !val.IsWhollyKnown() {
		// plainValue lets through only literals, which always evaluate.
		d.add(a.Expr.Range(), path, d.text(a.Expr.Range(), secret), "must be "+describeType(f.Type()))
		return
	}
	if val.IsNull() {
		// null means "not set", as in Terraform: keep the default.
		return
	}
	nv := reflect.New(f.Type())
	if err := decodeValue(val, nv.Interface()); err != nil {
		d.add(a.Expr.Range(), path, d.text(a.Expr.Range(), secret), "must be "+describeType(f.Type()))
		return
	}
	if o, ok := a.Expr.(*hclsyntax.ObjectConsExpr); ok && !d.mapKeys(o, path) {
		return
	}
	f.Set(nv.Elem())
	d.s.ranges[path] = a.SrcRange
	if t, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok {
		for i, e := range t.Exprs {
			d.s.ranges[indexPath(path, i)] = e.Range()
		}
	}
}

// mapKeys records the range of every entry of a map setting under
// "path[key]" and reports keys written twice: HCL keeps the last one
// silently, which would hide a mistake. It returns false when a key is
// repeated.
func (d *decoder) mapKeys(o *hclsyntax.ObjectConsExpr, path string) bool {
	first := make(map[string]hcl.Range, len(o.Items))
	ok := true
	for _, item := range o.Items {
		kv, diags := item.KeyExpr.Value(nil)
		if diags.HasErrors() || !kv.IsWhollyKnown() || kv.IsNull() {
			continue // the object decoded as a whole, so its keys evaluate
		}
		kv, err := convert.Convert(kv, cty.String)
		if err != nil {
			continue
		}
		key := kv.AsString()
		if prev, dup := first[key]; dup {
			d.add(item.KeyExpr.Range(), labelPath(path, key), quote(key), fmt.Sprintf("is set twice (the first is at %s); keep one", formatRange(prev)))
			ok = false
			continue
		}
		r := hcl.RangeBetween(item.KeyExpr.Range(), item.ValueExpr.Range())
		first[key] = r
		d.s.ranges[labelPath(path, key)] = r
	}
	return ok
}

// plainObject checks that e is what a map setting takes: an object whose
// keys are names or plain strings and whose values are plain values, like
// { Cache-Control = "no-store", "X-Pool" = "blue" }. Anything else is
// checked as a plain value, which then fails to decode with a message
// saying a map is wanted.
func plainObject(e hclsyntax.Expression) (hcl.Range, string, bool) {
	o, ok := e.(*hclsyntax.ObjectConsExpr)
	if !ok {
		return plainValue(e)
	}
	for _, item := range o.Items {
		k, ok := item.KeyExpr.(*hclsyntax.ObjectConsKeyExpr)
		if !ok || k.ForceNonLiteral {
			return item.KeyExpr.Range(), "map keys must be names or strings in double quotes", false
		}
		if hcl.ExprAsKeyword(k.Wrapped) == "" {
			if r, why, ok := plainValue(k.Wrapped); !ok {
				return r, why, false
			}
		}
		if r, why, ok := plainValue(item.ValueExpr); !ok {
			return r, why, false
		}
	}
	return hcl.Range{}, "", true
}

// block decodes one block into the field f, which is a struct (one block,
// merged over its defaults), a pointer to a struct (an optional block) or a
// slice of structs (repeatable, labelled blocks). seen holds, per block
// type, the first block of that type in this body: for a single block it
// catches duplicates, for a list it says the default list was replaced.
// It also holds, per label path ("api.token[ops]"), the first block with
// those labels.
func (d *decoder) block(blk *hclsyntax.Block, path string, f reflect.Value, seen map[string]hcl.Range) {
	t := f.Type()
	if t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	labels := structTags(t).labels
	if len(blk.Labels) != len(labels) {
		d.add(blk.DefRange(), path, "", labelUsage(blk.Type, labels))
		return
	}
	for _, l := range blk.Labels {
		path = labelPath(path, l)
	}
	if f.Kind() != reflect.Slice {
		if first, dup := seen[blk.Type]; dup {
			d.add(blk.DefRange(), path, "", fmt.Sprintf("appears twice; only one %s block is allowed (the first is at %s)", blk.Type, formatRange(first)))
			return
		}
		seen[blk.Type] = blk.DefRange()
	}

	if f.Kind() == reflect.Slice && len(labels) > 0 {
		// Two blocks with the same labels would share every field path,
		// so problems with the first could not be told apart from the
		// second's. Keep the first and report the second.
		if first, dup := seen[path]; dup {
			d.add(blk.DefRange(), path, "", fmt.Sprintf("is defined twice (the first is at %s); give each %s block its own name", formatRange(first), blk.Type))
			return
		}
		seen[path] = blk.DefRange()
	}

	var target reflect.Value
	switch f.Kind() {
	case reflect.Slice:
		if _, started := seen[blk.Type]; !started {
			// Blocks in the file replace the default list; they do not add to it.
			f.Set(reflect.MakeSlice(f.Type(), 0, 1))
			seen[blk.Type] = blk.DefRange()
		}
		target = reflect.New(t).Elem()
		setDefaults(target)
	case reflect.Pointer:
		target = reflect.New(t).Elem()
		if f.IsNil() {
			setDefaults(target)
		} else {
			target.Set(f.Elem())
		}
	default:
		target = f
	}
	for i, fi := range labels {
		target.Field(fi.Index[0]).SetString(blk.Labels[i])
	}
	d.s.ranges[path] = blk.DefRange()

	if bt, ok := target.Addr().Interface().(bodyTarget); ok {
		inner, known := bt.bodyTarget()
		if known {
			d.body(blk.Body, path, reflect.ValueOf(inner).Elem())
		}
	} else {
		d.body(blk.Body, path, target)
	}

	switch f.Kind() {
	case reflect.Slice:
		f.Set(reflect.Append(f, target))
	case reflect.Pointer:
		f.Set(target.Addr())
	}
}

// setDefaults applies the defaults of a new block, when its type has any.
func setDefaults(target reflect.Value) {
	if dt, ok := target.Addr().Interface().(defaulter); ok {
		dt.setDefaults()
	}
}

// decodeValue converts val into the Go value target points to. It is what
// gohcl.DecodeExpression does after evaluating; the gohcl package itself is
// not imported because it drags in hclwrite and its go-cmp dependency.
func decodeValue(val cty.Value, target any) error {
	ty, err := gocty.ImpliedType(target)
	if err != nil {
		return err
	}
	val, err = convert.Convert(val, ty)
	if err != nil {
		return err
	}
	return gocty.FromCtyValue(val, target)
}

// unknown reports a key the struct does not have, with the closest known
// key as a hint and the full list of keys the block takes.
func (d *decoder) unknown(r hcl.Range, parent, name string, tags tagSet) {
	known := tags.keys()
	msg := "is not a known setting"
	if s := closest(name, known); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	where := "the " + d.role + " file"
	if parent != "" {
		where = parent
	}
	if len(known) == 0 {
		msg += fmt.Sprintf(" (%s takes no settings)", where)
	} else {
		msg += fmt.Sprintf(" (%s takes: %s)", where, strings.Join(known, ", "))
	}
	d.add(r, joinPath(parent, name), "", msg)
}

// text returns the source text of r for a problem message: the first line
// only, shortened, or "(redacted, N chars)" for a secret.
func (d *decoder) text(r hcl.Range, secret bool) string {
	if r.Start.Byte < 0 || r.End.Byte > len(d.src) || r.Start.Byte > r.End.Byte {
		return ""
	}
	s := string(r.SliceBytes(d.src))
	if secret {
		return redact(s)
	}
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " ..."
	}
	if utf8.RuneCountInString(s) > 60 {
		s = string([]rune(s)[:60]) + " ..."
	}
	return s
}

// labelUsage explains how many labels a block type takes.
func labelUsage(typ string, labels []reflect.StructField) string {
	switch len(labels) {
	case 0:
		return fmt.Sprintf("takes no label; write it as %s { ... }", typ)
	case 1:
		name, _, _ := strings.Cut(labels[0].Tag.Get("hcl"), ",")
		return fmt.Sprintf("needs exactly one label, its %s; write it as %s \"%s\" { ... }", name, typ, name)
	default:
		return fmt.Sprintf("needs exactly %d labels", len(labels))
	}
}

// describeType says in words what a Go field type accepts.
func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string in double quotes"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "a whole number"
	case reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Slice:
		if k := t.Elem().Kind(); k == reflect.Int || k == reflect.Int64 {
			return "a list of whole numbers, like [200, 204]"
		}
		return "a list of strings, like [\"a\", \"b\"]"
	case reflect.Map:
		return "a map of strings, like { \"X-Name\" = \"value\" }"
	default:
		return "a value of type " + t.String()
	}
}
