package config

import (
	"reflect"
	"sort"
	"strings"
)

// tagSet is the HCL shape of a struct, read from its `hcl:"name,kind"`
// tags: kind "optional" (or none) is an attribute, "block" a nested block,
// "label" a block label.
type tagSet struct {
	attrs  map[string]*reflect.StructField
	blocks map[string]*reflect.StructField
	labels []reflect.StructField
}

// structTags reads the hcl tags of struct type t.
func structTags(t reflect.Type) tagSet {
	ts := tagSet{attrs: map[string]*reflect.StructField{}, blocks: map[string]*reflect.StructField{}}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("hcl")
		if !ok || !f.IsExported() {
			continue
		}
		name, kind, _ := strings.Cut(tag, ",")
		switch kind {
		case "block":
			ts.blocks[name] = &f
		case "label":
			ts.labels = append(ts.labels, f)
		default:
			ts.attrs[name] = &f
		}
	}
	return ts
}

// keys lists the attribute and block names, sorted.
func (ts tagSet) keys() []string {
	out := make([]string, 0, len(ts.attrs)+len(ts.blocks))
	for k := range ts.attrs {
		out = append(out, k)
	}
	for k := range ts.blocks {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// closest returns the candidate nearest to name by edit distance, or ""
// when none is close enough to be a likely typo.
func closest(name string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := editDistance(name, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
// Config keys are ASCII, and input that is not only skews the hint.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		// Long names are never typos of a known key; skip the quadratic work.
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
