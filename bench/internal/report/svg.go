package report

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
)

// SVG layout, in pixels.
const (
	svgWidth   = 860
	svgLabelW  = 110 // target names
	svgPanelW  = 340 // each of the two bar panels
	svgGap     = 30
	svgBarH    = 22
	svgRowH    = 32
	svgTop     = 64
	svgBottom  = 24
	svgValueW  = 80 // room right of a bar for its value
	svgBarArea = svgPanelW - svgValueW

	svgMaxReason = 110 // characters of a reason shown instead of bars
)

var svgColors = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1"}

// WriteSVG writes a chart of r: throughput bars (with the ratio to direct)
// on the left, p99 latency bars on the right, one row per target. Targets
// without figures show their reason instead of bars.
func (r *Report) WriteSVG(w io.Writer) error {
	var b bytes.Buffer
	h := svgTop + svgRowH*len(r.Targets) + svgBottom
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", svgWidth, h, svgWidth, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", esc(r.title()))
	left := float64(svgLabelW)
	right := left + svgPanelW + svgGap
	fmt.Fprintf(&b, `<text x="%.0f" y="48" font-weight="bold">throughput (ops/s)</text>`+"\n", left)
	fmt.Fprintf(&b, `<text x="%.0f" y="48" font-weight="bold">p99 latency (ms)</text>`+"\n", right)

	var maxOps, maxP99 float64
	for _, t := range r.Targets {
		maxOps = max(maxOps, t.OpsPerSec)
		maxP99 = max(maxP99, t.Latency.P99)
	}
	for i, t := range r.Targets {
		y := float64(svgTop + i*svgRowH)
		color := svgColors[i%len(svgColors)]
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%s</text>`+"\n", svgLabelW-8, y+svgBarH*0.7, esc(t.Name))
		if t.OpsPerSec == 0 {
			why := t.Unsupported
			if why == "" {
				why = t.Failed
			}
			if why == "" {
				why = "no operations"
			}
			if r := []rune(why); len(r) > svgMaxReason {
				why = string(r[:svgMaxReason-1]) + "…"
			}
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#888">%s</text>`+"\n", left, y+svgBarH*0.7, esc(why))
			continue
		}
		wOps := scale(t.OpsPerSec, maxOps)
		label := Thousands(t.OpsPerSec)
		if t.Ratio != nil {
			label += fmt.Sprintf(" (%.2f)", *t.Ratio)
		}
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.1f" height="%d" fill="%s"/>`+"\n", left, y, wOps, svgBarH, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f">%s</text>`+"\n", left+wOps+4, y+svgBarH*0.7, esc(label))
		wP99 := scale(t.Latency.P99, maxP99)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.1f" height="%d" fill="%s" fill-opacity="0.7"/>`+"\n", right, y, wP99, svgBarH, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f">%.3f</text>`+"\n", right+wP99+4, y+svgBarH*0.7, t.Latency.P99)
	}
	b.WriteString("</svg>\n")
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("report: svg: %w", err)
	}
	return nil
}

// scale maps v in [0, top] to a bar width, at least 1 pixel for v > 0.
func scale(v, top float64) float64 {
	if top <= 0 || v <= 0 {
		return 0
	}
	return max(1, v/top*svgBarArea)
}

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
