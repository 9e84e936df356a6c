package pkgfile

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// hclDecoder decodes cycler.hcl into a Manifest. The schema is small and
// fixed, so it walks the hclsyntax tree by hand instead of using gohcl:
// that way unknown keys, duplicate blocks and values other than plain
// literals are all reported with their line, and "${CYCLER_ADDR}" inside a
// string is kept as text for the agent instead of being evaluated.
type hclDecoder struct {
	file  string
	src   []byte
	probs []problem
	// ranges holds the source range of every field the file set, keyed by
	// field path ("start.command[1]"), so validation problems can name
	// the line.
	ranges map[string]hcl.Range
}

// parseHCL decodes src. The returned pos function maps a field path to the
// "file:line" of the closest enclosing field the file set.
func parseHCL(name string, src []byte) (Manifest, func(string) string, []problem) {
	d := &hclDecoder{file: name, src: src, ranges: make(map[string]hcl.Range)}
	var m Manifest
	f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
	if diags.HasErrors() {
		for _, diag := range diags {
			if diag.Severity != hcl.DiagError {
				continue
			}
			// Details can run over several paragraphs; a problem is one line.
			p := problem{pos: name, msg: strings.Join(strings.Fields(diag.Summary), " ")}
			if diag.Detail != "" {
				p.msg += ": " + strings.Join(strings.Fields(diag.Detail), " ")
			}
			if diag.Subject != nil {
				p.pos = formatRange(*diag.Subject)
			}
			d.probs = append(d.probs, p)
		}
		return m, d.pos, d.probs
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		// hclsyntax.ParseConfig always returns its own body type.
		return m, d.pos, []problem{{pos: name, msg: "the file could not be read as HCL native syntax"}}
	}
	d.body(body, "", map[string]func(*hclsyntax.Attribute, string){
		"name":    func(a *hclsyntax.Attribute, f string) { d.str(a.Expr, f, &m.Name) },
		"version": func(a *hclsyntax.Attribute, f string) { d.str(a.Expr, f, &m.Version) },
	}, map[string]func(*hclsyntax.Block, string){
		"start": func(b *hclsyntax.Block, f string) {
			m.Start = &Start{}
			d.body(b.Body, f, map[string]func(*hclsyntax.Attribute, string){
				"command": func(a *hclsyntax.Attribute, f string) { m.Start.Command = d.strList(a.Expr, f) },
				"env":     func(a *hclsyntax.Attribute, f string) { m.Start.Env = d.strMap(a.Expr, f) },
			}, nil)
		},
		"health": func(b *hclsyntax.Block, f string) {
			m.Health = &Health{Timeout: DefaultHealthTimeout}
			d.body(b.Body, f, map[string]func(*hclsyntax.Attribute, string){
				"http_path": func(a *hclsyntax.Attribute, f string) { d.str(a.Expr, f, &m.Health.HTTPPath) },
				"tcp":       func(a *hclsyntax.Attribute, f string) { d.boolean(a.Expr, f, &m.Health.TCP) },
				"timeout":   func(a *hclsyntax.Attribute, f string) { d.duration(a.Expr, f, &m.Health.Timeout) },
			}, nil)
		},
		"hooks": func(b *hclsyntax.Block, f string) {
			d.body(b.Body, f, map[string]func(*hclsyntax.Attribute, string){
				"pre_switch":  func(a *hclsyntax.Attribute, f string) { m.Hooks.PreSwitch = d.argvList(a.Expr, f) },
				"post_switch": func(a *hclsyntax.Attribute, f string) { m.Hooks.PostSwitch = d.argvList(a.Expr, f) },
			}, nil)
		},
	})
	return m, d.pos, d.probs
}

// body decodes b's attributes and blocks with the given decoders,
// reporting unknown keys, labels and repeated blocks.
func (d *hclDecoder) body(b *hclsyntax.Body, path string, attrs map[string]func(*hclsyntax.Attribute, string), blocks map[string]func(*hclsyntax.Block, string)) {
	known := slices.Sorted(maps.Keys(attrs))
	known = append(known, slices.Sorted(maps.Keys(blocks))...)

	list := slices.Collect(maps.Values(b.Attributes))
	// Map order is random; decode in file order so problems are stable.
	sort.Slice(list, func(i, j int) bool { return list[i].SrcRange.Start.Byte < list[j].SrcRange.Start.Byte })
	for _, a := range list {
		field := joinField(path, a.Name)
		switch {
		case attrs[a.Name] != nil:
			d.ranges[field] = a.SrcRange
			if lit, ok := a.Expr.(*hclsyntax.LiteralValueExpr); ok && lit.Val.IsNull() {
				continue // null means "not set"
			}
			attrs[a.Name](a, field)
		case blocks[a.Name] != nil:
			d.add(a.NameRange, field, "", "is a block, not a setting; write it as %s { ... }", a.Name)
		default:
			d.unknown(a.NameRange, path, field, known)
		}
	}

	seen := make(map[string]hcl.Range)
	for _, blk := range b.Blocks {
		field := joinField(path, blk.Type)
		switch {
		case blocks[blk.Type] == nil && attrs[blk.Type] != nil:
			d.add(blk.TypeRange, field, "", "is a setting, not a block; write it as %s = value", blk.Type)
		case blocks[blk.Type] == nil:
			d.unknown(blk.TypeRange, path, field, known)
		case len(blk.Labels) > 0:
			d.add(blk.DefRange(), field, "", "takes no label; write it as %s { ... }", blk.Type)
		default:
			if first, dup := seen[blk.Type]; dup {
				d.add(blk.DefRange(), field, "", "appears twice; only one %s block is allowed (the first is at %s)", blk.Type, formatRange(first))
				continue
			}
			seen[blk.Type] = blk.DefRange()
			d.ranges[field] = blk.DefRange()
			blocks[blk.Type](blk, field)
		}
	}
}

// unknown reports a key the block does not take.
func (d *hclDecoder) unknown(r hcl.Range, parent, field string, known []string) {
	where := "the manifest"
	if parent != "" {
		where = parent
	}
	d.add(r, field, "", "is not a known setting (%s takes: %s)", where, strings.Join(known, ", "))
}

// str decodes a string: a quoted string or heredoc whose only
// interpolations are bare variable names, kept as "${NAME}".
func (d *hclDecoder) str(e hclsyntax.Expression, field string, dst *string) bool {
	switch e := e.(type) {
	case *hclsyntax.TemplateExpr:
		var b strings.Builder
		for _, p := range e.Parts {
			if lit, ok := p.(*hclsyntax.LiteralValueExpr); ok && lit.Val.Type() == cty.String && !lit.Val.IsNull() {
				b.WriteString(lit.Val.AsString())
				continue
			}
			name, ok := refName(p)
			if !ok {
				d.add(p.Range(), field, d.text(p.Range()), "is not allowed in a string; only a variable reference like ${%s} is", EnvAddr)
				return false
			}
			b.WriteString("${" + name + "}")
		}
		*dst = b.String()
		return true
	case *hclsyntax.TemplateWrapExpr:
		if name, ok := refName(e.Wrapped); ok {
			*dst = "${" + name + "}"
			return true
		}
		d.add(e.Wrapped.Range(), field, d.text(e.Wrapped.Range()), "is not allowed in a string; only a variable reference like ${%s} is", EnvAddr)
		return false
	case *hclsyntax.LiteralValueExpr:
		if e.Val.Type() == cty.String && !e.Val.IsNull() {
			*dst = e.Val.AsString()
			return true
		}
	case *hclsyntax.ScopeTraversalExpr:
		d.add(e.Range(), field, d.text(e.Range()), "is a reference, not a value; write strings in double quotes (\"${%s}\" for an agent variable)", EnvAddr)
		return false
	}
	d.add(e.Range(), field, d.text(e.Range()), "must be a string in double quotes")
	return false
}

// refName returns the variable name of a bare reference like CYCLER_ADDR,
// without attributes or indexes.
func refName(e hclsyntax.Expression) (string, bool) {
	t, ok := e.(*hclsyntax.ScopeTraversalExpr)
	if !ok || len(t.Traversal) != 1 {
		return "", false
	}
	return t.Traversal.RootName(), true
}

// strList decodes a list of strings, recording each element's range.
func (d *hclDecoder) strList(e hclsyntax.Expression, field string) []string {
	t, ok := e.(*hclsyntax.TupleConsExpr)
	if !ok {
		d.add(e.Range(), field, d.text(e.Range()), "must be a list of strings, like [\"./bin/web\", \"--listen\", \"${%s}\"]; commands are argv lists, not shell strings", EnvAddr)
		return nil
	}
	out := make([]string, len(t.Exprs))
	for i, item := range t.Exprs {
		f := fmt.Sprintf("%s[%d]", field, i)
		d.ranges[f] = item.Range()
		d.str(item, f, &out[i])
	}
	return out
}

// argvList decodes a list of argv lists.
func (d *hclDecoder) argvList(e hclsyntax.Expression, field string) [][]string {
	t, ok := e.(*hclsyntax.TupleConsExpr)
	if !ok {
		d.add(e.Range(), field, d.text(e.Range()), "must be a list of commands, each a list of strings, like [[\"./bin/migrate\", \"--check\"]]")
		return nil
	}
	out := make([][]string, len(t.Exprs))
	for i, item := range t.Exprs {
		f := fmt.Sprintf("%s[%d]", field, i)
		d.ranges[f] = item.Range()
		out[i] = d.strList(item, f)
	}
	return out
}

// strMap decodes an object of string values, like { LOG_LEVEL = "info" }.
func (d *hclDecoder) strMap(e hclsyntax.Expression, field string) map[string]string {
	o, ok := e.(*hclsyntax.ObjectConsExpr)
	if !ok {
		d.add(e.Range(), field, d.text(e.Range()), "must be an object of strings, like { LOG_LEVEL = \"info\" }")
		return nil
	}
	out := make(map[string]string, len(o.Items))
	first := make(map[string]hcl.Range, len(o.Items))
	for _, item := range o.Items {
		key, ok := d.key(item.KeyExpr, field)
		if !ok {
			continue
		}
		f := joinField(field, key)
		if r, dup := first[key]; dup {
			d.add(item.KeyExpr.Range(), f, "", "is set twice (the first is at %s)", formatRange(r))
			continue
		}
		first[key] = item.KeyExpr.Range()
		d.ranges[f] = item.ValueExpr.Range()
		var v string
		if d.str(item.ValueExpr, f, &v) {
			out[key] = v
		}
	}
	return out
}

// key decodes an object key: a bare name or a plain quoted string.
func (d *hclDecoder) key(e hclsyntax.Expression, field string) (string, bool) {
	if k, ok := e.(*hclsyntax.ObjectConsKeyExpr); ok && !k.ForceNonLiteral {
		if name, ok := refName(k.Wrapped); ok {
			return name, true
		}
		e = k.Wrapped
	}
	if t, ok := e.(*hclsyntax.TemplateExpr); ok && len(t.Parts) <= 1 {
		var s string
		if len(t.Parts) == 0 || d.str(t, field, &s) {
			return s, true
		}
		return "", false
	}
	d.add(e.Range(), field, d.text(e.Range()), "has a key that is not a name or a plain string")
	return "", false
}

// boolean decodes true or false.
func (d *hclDecoder) boolean(e hclsyntax.Expression, field string, dst *bool) {
	if lit, ok := e.(*hclsyntax.LiteralValueExpr); ok && lit.Val.Type() == cty.Bool {
		*dst = lit.Val.True()
		return
	}
	d.add(e.Range(), field, d.text(e.Range()), "must be true or false")
}

// duration decodes a duration string like "30s".
func (d *hclDecoder) duration(e hclsyntax.Expression, field string, dst *time.Duration) {
	var s string
	if !d.str(e, field, &s) {
		return
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.add(e.Range(), field, quote(s), "must be a duration like \"30s\" or \"2m\"")
		return
	}
	*dst = v
}

// add records a problem at r.
func (d *hclDecoder) add(r hcl.Range, field, value, format string, args ...any) {
	d.probs = append(d.probs, problem{pos: formatRange(r), field: field, value: value, msg: fmt.Sprintf(format, args...)})
}

// text returns the source text of r for a problem message: its first
// line, shortened.
func (d *hclDecoder) text(r hcl.Range) string {
	if r.Start.Byte < 0 || r.End.Byte > len(d.src) || r.Start.Byte > r.End.Byte {
		return ""
	}
	s := string(r.SliceBytes(d.src))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " ..."
	}
	if utf8.RuneCountInString(s) > 60 {
		s = string([]rune(s)[:60]) + " ..."
	}
	return s
}

// pos returns where field was set: the "file:line" of the field or of its
// closest enclosing field, or the file name.
func (d *hclDecoder) pos(field string) string {
	for f := field; f != ""; f = parentField(f) {
		if r, ok := d.ranges[f]; ok {
			return formatRange(r)
		}
	}
	return d.file
}

// formatRange prints the start of r as "file:line".
func formatRange(r hcl.Range) string {
	return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line)
}

// joinField appends name to a field path.
func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// parentField strips the last element of a field path:
// "start.command[1]" -> "start.command" -> "start" -> "".
func parentField(f string) string {
	if strings.HasSuffix(f, "]") {
		if i := strings.LastIndexByte(f, '['); i >= 0 {
			return f[:i]
		}
	}
	if i := strings.LastIndexByte(f, '.'); i >= 0 {
		return f[:i]
	}
	return ""
}
