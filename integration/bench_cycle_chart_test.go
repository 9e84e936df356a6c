//go:build integration && linux

package integration

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// chartPanel is one deploy of the chart: per LB, the version sampler's
// answers over the deploy's window.
type chartPanel struct {
	Title string `json:"title"`
	// Old and New are the versions on the lower and upper row.
	Old     string      `json:"old_version"`
	New     string      `json:"new_version"`
	Seconds float64     `json:"seconds"`
	Marks   []chartMark `json:"marks"`
	Lanes   []chartLane `json:"lanes"`
}

// chartMark is a step of the deploy, at seconds from the window's start.
type chartMark struct {
	AtS   float64 `json:"at_s"`
	Label string  `json:"label"`
}

// chartLane is one LB's answers: runs of consecutive answers from one
// version, and the failed requests.
type chartLane struct {
	LB        string         `json:"lb"`
	Segments  []chartSegment `json:"segments"`
	FailuresS []float64      `json:"failures_s"`
}

// chartSegment is a run of answers from the new version (New) or the old.
type chartSegment struct {
	FromS float64 `json:"from_s"`
	ToS   float64 `json:"to_s"`
	New   bool    `json:"new"`
}

// buildPanel draws deploy d, which replaced version old, from the
// recorder's samples of each LB, from cycleMargin before d to cycleMargin
// after it.
func buildPanel(title, old string, d deployRun, rec *versionRecorder, lbs []cycleLB) chartPanel {
	from, to := d.Start.Add(-cycleMargin), d.End.Add(cycleMargin)
	sec := func(t time.Time) float64 { return math.Round(t.Sub(from).Seconds()*1000) / 1000 }
	p := chartPanel{Title: title, Old: old, New: d.Version, Seconds: sec(to)}
	for _, s := range d.Phases {
		p.Marks = append(p.Marks, chartMark{AtS: sec(s.Start), Label: s.Phase})
	}
	p.Marks = append(p.Marks, chartMark{AtS: sec(d.End), Label: "returned"})
	for _, lb := range lbs {
		lane := chartLane{LB: lb.Name}
		samples := rec.window(lb.Name, from, to)
		for i, s := range samples {
			at := sec(s.At)
			if s.Err != "" {
				lane.FailuresS = append(lane.FailuresS, at)
				continue
			}
			end := at + cycleSampleEvery.Seconds()
			if i+1 < len(samples) {
				end = sec(samples[i+1].At)
			}
			isNew := s.Version == d.Version
			if n := len(lane.Segments); n > 0 && lane.Segments[n-1].New == isNew && math.Abs(lane.Segments[n-1].ToS-at) < 1e-6 {
				lane.Segments[n-1].ToS = end
				continue
			}
			lane.Segments = append(lane.Segments, chartSegment{FromS: at, ToS: end, New: isNew})
		}
		p.Lanes = append(p.Lanes, lane)
	}
	return p
}

// Chart geometry, in SVG user units.
const (
	chartWidth    = 1000
	chartLeft     = 130 // lane labels
	chartRight    = 20
	chartLaneH    = 34
	chartLaneGap  = 10
	chartTitleH   = 28
	chartMarkRows = 4
	chartMarkRowH = 13
	chartMarksH   = chartMarkRows*chartMarkRowH + 8 // step labels above the lanes
	chartAxisH    = 30
	chartPanelGap = 24
)

// renderCycleChart draws the panels as one SVG, written by hand so the
// report needs no plotting library. Both panels share one time scale.
func renderCycleChart(rep cycleReport) string {
	longest := 1.0
	for _, p := range rep.Chart {
		longest = max(longest, p.Seconds)
	}
	plotW := float64(chartWidth - chartLeft - chartRight)
	x := func(s float64) float64 { return chartLeft + s/longest*plotW }
	panelH := func(p chartPanel) int {
		return chartTitleH + chartMarksH + len(p.Lanes)*(chartLaneH+chartLaneGap) + chartAxisH
	}
	height := 40
	for _, p := range rep.Chart {
		height += panelH(p) + chartPanelGap
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", chartWidth, height)
	fmt.Fprintf(&b, `<text x="10" y="18" font-size="14" font-weight="bold">Version served through each LB, sampled every %.0f ms (%s)</text>`+"\n",
		rep.SampleEveryMS, html.EscapeString(rep.Date.Format("2006-01-02")))
	legendX := 10
	for _, l := range []struct{ color, text string }{{"#9aa5b1", "old version"}, {"#2b8a3e", "new version"}, {"#e03131", "failed request"}} {
		fmt.Fprintf(&b, `<rect x="%d" y="26" width="10" height="10" fill="%s"/><text x="%d" y="35">%s</text>`+"\n", legendX, l.color, legendX+14, l.text)
		legendX += 110
	}
	y := 40
	for _, p := range rep.Chart {
		fmt.Fprintf(&b, `<text x="10" y="%d" font-size="13" font-weight="bold">%s: %s to %s</text>`+"\n", y+18, html.EscapeString(p.Title),
			html.EscapeString(p.Old), html.EscapeString(p.New))
		top := y + chartTitleH + chartMarksH
		bottom := top + len(p.Lanes)*(chartLaneH+chartLaneGap) - chartLaneGap
		// Labels go on the lowest row where they do not overlap the
		// previous label (about 6 units per character), or on the row
		// that frees up first.
		rowEnd := make([]float64, chartMarkRows)
		for _, m := range p.Marks {
			mx := x(m.AtS)
			row := 0
			for r := range rowEnd {
				if rowEnd[r] <= mx {
					row = r
					break
				}
				if rowEnd[r] < rowEnd[row] {
					row = r
				}
			}
			rowEnd[row] = mx + 6.2*float64(len(m.Label)) + 8
			ty := top - 6 - row*chartMarkRowH
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#868e96" stroke-dasharray="3,3"/>`+"\n", mx, ty-9, mx, bottom)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#495057">%s</text>`+"\n", mx+2, ty, html.EscapeString(m.Label))
		}
		for i, lane := range p.Lanes {
			ly := top + i*(chartLaneH+chartLaneGap)
			half := chartLaneH / 2
			fmt.Fprintf(&b, `<text x="10" y="%d" font-weight="bold">%s</text>`+"\n", ly+half+4, html.EscapeString(lane.LB))
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" fill="#2b8a3e">%s</text><text x="%d" y="%d" text-anchor="end" fill="#6c757d">%s</text>`+"\n",
				chartLeft-4, ly+half-4, html.EscapeString(p.New), chartLeft-4, ly+chartLaneH-4, html.EscapeString(p.Old))
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%d" fill="#f8f9fa" stroke="#dee2e6"/>`+"\n", chartLeft, ly, plotW, chartLaneH)
			for _, s := range lane.Segments {
				sy, color := ly+half+2, "#9aa5b1"
				if s.New {
					sy, color = ly+2, "#2b8a3e"
				}
				fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x(s.FromS), sy, max(x(s.ToS)-x(s.FromS), 0.6), half-4, color)
			}
			for _, f := range lane.FailuresS {
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e03131" stroke-width="2"/>`+"\n", x(f), ly-3, x(f), ly+chartLaneH+3)
			}
		}
		ay := bottom + 14
		for s := 0.0; s <= p.Seconds; s++ {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#adb5bd"/><text x="%.1f" y="%d" text-anchor="middle" fill="#495057">%.0f</text>`+"\n",
				x(s), bottom, x(s), bottom+4, x(s), ay, s)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" fill="#495057">seconds</text>`+"\n", chartWidth-chartRight, ay+12)
		y += panelH(p) + chartPanelGap
	}
	b.WriteString("</svg>\n")
	return b.String()
}
