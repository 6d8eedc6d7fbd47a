package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/clusterproxy/clusterproxy/bench/internal/stats"
)

func sample() *Report {
	r := &Report{
		Scenario: "getset",
		Date:     "2026-11-25T06:00:00Z",
		Host:     "linux/amd64, 2 CPUs",
		Command:  "go run ./bench -local",
		Params:   map[string]any{"conns": 50, "pipeline": 1, "n": 1000},
		Rounds:   2,
		Targets: []Target{
			{Name: "proxy", Kind: "single", Ops: 2000, OpsPerSec: 45000, RoundOpsPerSec: []float64{44000, 46000},
				Latency: stats.Latency{Count: 2000, P50: 0.5, P90: 0.9, P99: 1.5, P999: 2, Max: 3},
				PID:     42, ProcCPUSeconds: 0.02, OpsPerCPUSecond: 100000, BenchCPU: 0.4,
				MachineCPUPerOp: 16, MachineIdle: 0.125,
				Memory: &Memory{Before: 10 << 20, Peak: 30 << 20, After: 12 << 20, HWM: 31 << 20},
				Steps:  []Step{{Name: "rl.acquire", Latency: stats.Latency{Count: 10, P50: 0.2}}},
				Extra:  map[string]any{"lost": 0.0, "published_per_sec": 1234.5}},
			{Name: "direct", Kind: "cluster", Ops: 2000, OpsPerSec: 60000, RoundOpsPerSec: []float64{60000, 60000},
				Latency: stats.Latency{Count: 2000, P50: 0.3, P90: 0.6, P99: 1.0, P999: 1.2, Max: 2}, BenchCPU: 0.5,
				MachineCPUPerOp: 10},
			{Name: "a<b>|c", Kind: "single", Unsupported: "unsupported by target: RL.PEEK: ERR unknown command"},
			{Name: "broken", Kind: "single", Failed: "dial tcp: refused"},
		},
	}
	r.SetRatios("direct")
	r.Warnings = []string{"proxy: 3 of 2003 operations failed"}
	return r
}

func TestSetRatios(t *testing.T) {
	r := sample()
	p := r.Targets[0]
	if p.Ratio == nil || *p.Ratio != 0.75 || p.P99Ratio == nil || *p.P99Ratio != 1.5 {
		t.Fatalf("proxy ratios %v %v, want 0.75 and 1.5", p.Ratio, p.P99Ratio)
	}
	if p.CPURatio == nil || *p.CPURatio != 0.625 {
		t.Errorf("proxy CPU ratio %v, want 0.625 (10 us per op against 16)", p.CPURatio)
	}
	if d := r.Targets[1]; d.Ratio == nil || *d.Ratio != 1 || d.CPURatio == nil || *d.CPURatio != 1 {
		t.Errorf("direct ratios %v %v, want 1", d.Ratio, d.CPURatio)
	}
	if r.Targets[2].Ratio != nil {
		t.Error("a target without figures got a ratio")
	}
	r2 := &Report{Targets: []Target{{Name: "proxy", OpsPerSec: 5}}}
	r2.SetRatios("direct")
	if r2.Targets[0].Ratio != nil {
		t.Error("ratio set without a direct target")
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 1234567.8: "1,234,568", -4500: "-4,500"} {
		if got := Thousands(v); got != want {
			t.Errorf("Thousands(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	if err := sample().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"scenario getset, 2 rounds alternating",
		"conns=50 n=1000 pipeline=1",
		"45,000", "0.75", "1.500", "100,000", // proxy: ops/s, ratio, p99, ops per CPU-second
		"16.00", "12%", "0.62", // proxy: machine CPU per op, idle, the ratio that CPU allows
		"10.00",
		"60,000",
		"unsupported", "RL.PEEK: ERR unknown command",
		"broken: failed: dial tcp: refused",
		"RSS before 10.0 MiB, peak 30.0 MiB, after 12.0 MiB, HWM 31.0 MiB",
		"rounds ops/s: 44,000, 46,000",
		"published_per_sec 1234.50",
		"latency per step", "rl.acquire",
		"warning: proxy: 3 of 2003 operations failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Columns align: every row of the main table has the same width.
	lines := strings.Split(out, "\n")
	var widths []int
	for _, l := range lines[3:7] {
		widths = append(widths, len(l))
	}
	for _, w := range widths {
		if w != widths[0] {
			t.Errorf("main table rows of different widths %v:\n%s", widths, out)
			break
		}
	}
}

func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := sample().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "| ") {
			rows = append(rows, l)
		}
	}
	// Main table: header, separator, four targets; step table: header,
	// separator, one step.
	if len(rows) != 9 {
		t.Fatalf("%d table rows, want 9:\n%s", len(rows), b.String())
	}
	cols := strings.Count(strings.ReplaceAll(rows[0], `\|`, ""), "|")
	for _, r := range rows[:6] {
		if got := strings.Count(strings.ReplaceAll(r, `\|`, ""), "|"); got != cols {
			t.Errorf("row %q has %d separators, want %d", r, got, cols)
		}
	}
	if !strings.Contains(b.String(), `a<b>\|c`) {
		t.Errorf("a '|' in a name must be escaped:\n%s", b.String())
	}
	if !strings.Contains(b.String(), "- proxy: rounds ops/s") || !strings.Contains(b.String(), "- warning: proxy: 3 of 2003") {
		t.Errorf("details must be a Markdown list:\n%s", b.String())
	}
}

func TestJSON(t *testing.T) {
	var b bytes.Buffer
	if err := sample().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	p := back.Targets[0]
	if back.Scenario != "getset" || len(back.Targets) != 4 || p.OpsPerSec != 45000 || p.Latency.P99 != 1.5 ||
		*p.Ratio != 0.75 || p.Memory.Peak != 30<<20 || p.Steps[0].Name != "rl.acquire" {
		t.Errorf("round trip lost data: %+v", back)
	}
	if !strings.Contains(b.String(), `"ops_per_cpu_second": 100000`) || !strings.Contains(b.String(), `"p999_ms": 2`) {
		t.Errorf("json field names changed:\n%s", b.String())
	}
}

func TestSVG(t *testing.T) {
	var b bytes.Buffer
	if err := sample().WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML, one throughput and one p99 bar per measured target
	// (plus the background rect), names escaped.
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	rects, texts := 0, []string{}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("svg is not well-formed XML: %v\n%s", err, b.String())
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if el.Name.Local == "rect" {
				rects++
			}
		case xml.CharData:
			texts = append(texts, string(el))
		}
	}
	if rects != 1+2*2 {
		t.Errorf("%d rects, want 5 (background + 2 bars for each of 2 measured targets)", rects)
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{"a<b>|c", "45,000 (0.75)", "60,000 (1.00)", "1.500", "unsupported by target", "dial tcp: refused"} {
		if !strings.Contains(all, want) {
			t.Errorf("svg text lacks %q:\n%s", want, all)
		}
	}
	// The fastest target's bar spans the whole bar area.
	if !strings.Contains(b.String(), `width="260.0"`) {
		t.Errorf("the largest bar should be %d px wide:\n%s", svgBarArea, b.String())
	}
}
