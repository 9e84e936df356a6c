package config

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// maxNumberExp bounds the binary exponent of a number literal, about
// 1e±330. Larger numbers are never a valid setting, and turning one like
// 1e9999999 into a string (data_dir = 1e9999999) takes tens of seconds.
const maxNumberExp = 1100

// plainValue checks that e is a plain value: a literal, a string without
// ${...} or %{...}, a negated number or a list of plain values. Settings
// are data, and refusing expressions before evaluating them also means a
// hostile file cannot make evaluation slow. It returns the range of the
// first part that is not plain and why.
func plainValue(e hclsyntax.Expression) (hcl.Range, string, bool) {
	switch e := e.(type) {
	case *hclsyntax.LiteralValueExpr:
		if hugeNumber(e.Val) {
			return e.SrcRange, "the number is too large or too small", false
		}
		return hcl.Range{}, "", true
	case *hclsyntax.TemplateExpr:
		for _, p := range e.Parts {
			// Literal text is a string literal; an interpolation, even
			// of a literal like ${1}, is anything else.
			if lit, ok := p.(*hclsyntax.LiteralValueExpr); !ok || lit.Val.Type() != cty.String {
				return p.Range(), "string templates (${...} and %{...}) are not supported; write the value out", false
			}
		}
		return hcl.Range{}, "", true
	case *hclsyntax.TupleConsExpr:
		for _, item := range e.Exprs {
			if r, why, ok := plainValue(item); !ok {
				return r, why, false
			}
		}
		return hcl.Range{}, "", true
	case *hclsyntax.UnaryOpExpr:
		if lit, ok := e.Val.(*hclsyntax.LiteralValueExpr); ok && e.Op == hclsyntax.OpNegate && lit.Val.Type() == cty.Number {
			return plainValue(lit)
		}
	case *hclsyntax.ScopeTraversalExpr:
		return e.SrcRange, "variables and references are not supported", false
	case *hclsyntax.FunctionCallExpr:
		return e.Range(), "function calls are not supported", false
	}
	return e.Range(), "expressions are not supported; write a plain value", false
}

// hugeNumber reports whether v is a number too large or too small to be a
// setting.
func hugeNumber(v cty.Value) bool {
	if v.Type() != cty.Number || v.IsNull() || !v.IsKnown() {
		return false
	}
	bf := v.AsBigFloat()
	switch {
	case bf.IsInf():
		return true
	case bf.Sign() == 0:
		return false
	}
	exp := bf.MantExp(nil)
	return exp > maxNumberExp || exp < -maxNumberExp
}
