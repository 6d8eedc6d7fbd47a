// Package report holds the bench tool's results and writes them as a
// terminal table, JSON, Markdown and an SVG chart.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/clusterproxy/clusterproxy/bench/internal/stats"
)

// Report is the result of one bench run.
type Report struct {
	// Scenario is the scenario's name.
	Scenario string `json:"scenario"`
	// Date is the run's start, RFC 3339 UTC.
	Date string `json:"date"`
	// Host describes the machine ("linux/amd64, 2 CPUs").
	Host string `json:"host"`
	// Command is the bench command line.
	Command string `json:"command"`
	// Params are the load parameters (conns, pipeline, n...).
	Params map[string]any `json:"params"`
	// Rounds is the number of alternating rounds.
	Rounds int `json:"rounds"`
	// Targets are the results per target, in command-line order.
	Targets []Target `json:"targets"`
	// Warnings say why figures may mislead (the load generator saturated,
	// operations failed).
	Warnings []string `json:"warnings,omitempty"`
}

// Target is one target's figures over all rounds.
type Target struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	Addr string `json:"addr"`
	// Unsupported, when set, says why the scenario did not run on this
	// target; the figures are then empty.
	Unsupported string `json:"unsupported,omitempty"`
	// Failed, when set, is the error that stopped a round.
	Failed string `json:"failed,omitempty"`

	Ops        int64   `json:"ops"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	// OpsPerSec is Ops over Seconds (all rounds together).
	OpsPerSec float64 `json:"ops_per_sec"`
	// RoundOpsPerSec is the throughput of each round, to judge the noise.
	RoundOpsPerSec []float64      `json:"round_ops_per_sec"`
	Latency        stats.Latency  `json:"latency"`
	Steps          []Step         `json:"steps,omitempty"`
	Extra          map[string]any `json:"extra,omitempty"`

	// Ratio is OpsPerSec over the direct target's; P99Ratio likewise for
	// p99. Both are nil without a direct target.
	Ratio    *float64 `json:"ratio_to_direct,omitempty"`
	P99Ratio *float64 `json:"p99_ratio_to_direct,omitempty"`

	// ProcCPUSeconds is the CPU time the target's process (PID) used during
	// its rounds; OpsPerCPUSecond is Ops over it. Zero without a PID.
	PID             int     `json:"pid,omitempty"`
	ProcCPUSeconds  float64 `json:"proc_cpu_seconds,omitempty"`
	OpsPerCPUSecond float64 `json:"ops_per_cpu_second,omitempty"`
	// Memory of the target's process, nil without a PID.
	Memory *Memory `json:"memory,omitempty"`

	// BenchCPU is the load generator's own CPU use during this target's
	// rounds, in cores (1.0 = one core busy): when it nears the machine's
	// core count, the generator is the bottleneck.
	BenchCPU float64 `json:"bench_cpu_cores"`

	// MachineCPUPerOp is the CPU time the whole machine (every process:
	// load generator, target, cluster nodes) spent per operation during the
	// target's rounds, in microseconds; MachineIdle is the share of the
	// machine's CPU time left idle. On a machine that runs everything, a
	// busy machine's throughput is bound by CPU per operation: CPURatio,
	// the direct target's MachineCPUPerOp over this one's, is the ratio to
	// direct that the target's measured cost allows.
	MachineCPUPerOp float64  `json:"machine_cpu_us_per_op,omitempty"`
	MachineIdle     float64  `json:"machine_idle,omitempty"`
	CPURatio        *float64 `json:"cpu_ratio_to_direct,omitempty"`
}

// Step is the latency of one step of a compound operation.
type Step struct {
	Name    string        `json:"name"`
	Latency stats.Latency `json:"latency"`
}

// Memory is the target process's resident memory, in bytes.
type Memory struct {
	// Before is VmRSS before the first round, Peak the highest VmRSS
	// sampled during the rounds, After VmRSS after the last round, HWM the
	// kernel's VmHWM (peak over the process's whole life) at the end.
	Before int64 `json:"rss_before"`
	Peak   int64 `json:"rss_peak"`
	After  int64 `json:"rss_after"`
	HWM    int64 `json:"hwm"`
}

// SetRatios fills Ratio and P99Ratio of every target from the target named
// direct, if it has figures.
func (r *Report) SetRatios(direct string) {
	var d *Target
	for i := range r.Targets {
		if r.Targets[i].Name == direct && r.Targets[i].OpsPerSec > 0 {
			d = &r.Targets[i]
		}
	}
	if d == nil {
		return
	}
	for i := range r.Targets {
		t := &r.Targets[i]
		if t.OpsPerSec == 0 {
			continue
		}
		ratio := t.OpsPerSec / d.OpsPerSec
		t.Ratio = &ratio
		if d.MachineCPUPerOp > 0 && t.MachineCPUPerOp > 0 {
			c := d.MachineCPUPerOp / t.MachineCPUPerOp
			t.CPURatio = &c
		}
		if d.Latency.P99 > 0 {
			p := t.Latency.P99 / d.Latency.P99
			t.P99Ratio = &p
		}
	}
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: json: %w", err)
	}
	return nil
}

// header and row give the main table in both text and Markdown.
var header = []string{"target", "ops/s", "vs direct", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "p99 vs direct", "errors", "ops/CPU-s", "bench CPU", "machine us/op", "idle", "CPU allows"}

func row(t Target) []string {
	if t.Unsupported != "" || t.Failed != "" {
		out := make([]string, len(header))
		out[0] = t.Name
		for i := 1; i < len(out); i++ {
			out[i] = "-"
		}
		out[1] = "failed"
		if t.Unsupported != "" {
			out[1] = "unsupported"
		}
		return out
	}
	return []string{
		t.Name,
		Thousands(t.OpsPerSec),
		ratio(t.Ratio),
		ms(t.Latency.P50), ms(t.Latency.P90), ms(t.Latency.P99), ms(t.Latency.P999), ms(t.Latency.Max),
		ratio(t.P99Ratio),
		strconv.FormatInt(t.Errors, 10),
		orDash(t.OpsPerCPUSecond),
		fmt.Sprintf("%.2f", t.BenchCPU),
		perOp(t.MachineCPUPerOp),
		fmt.Sprintf("%.0f%%", 100*t.MachineIdle),
		ratio(t.CPURatio),
	}
}

func perOp(us float64) string {
	if us == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", us)
}

func ratio(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *p)
}

func ms(v float64) string { return fmt.Sprintf("%.3f", v) }

func orDash(v float64) string {
	if v == 0 {
		return "-"
	}
	return Thousands(v)
}

// Thousands formats v rounded to an integer with comma separators.
func Thousands(v float64) string {
	n := int64(v + 0.5)
	if v < 0 {
		n = int64(v - 0.5)
	}
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// MiB formats bytes in MiB with one decimal.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func (r *Report) title() string {
	rounds := fmt.Sprintf("%d rounds alternating", r.Rounds)
	if r.Rounds == 1 {
		rounds = "1 round"
	}
	return fmt.Sprintf("scenario %s, %s, %s, %s", r.Scenario, rounds, r.Host, r.Date)
}

func (r *Report) paramLine() string {
	keys := make([]string, 0, len(r.Params))
	for k := range r.Params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, r.Params[k])
	}
	return strings.Join(parts, " ")
}

// WriteTable writes r as aligned plain-text tables for a terminal.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintln(w, r.title())
	fmt.Fprintln(w, r.paramLine())
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	for _, t := range r.Targets {
		fmt.Fprintln(tw, strings.Join(row(t), "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("report: table: %w", err)
	}
	r.writeDetails(w, false)
	return nil
}

// WriteMarkdown writes r as Markdown tables.
func (r *Report) WriteMarkdown(w io.Writer) error {
	fmt.Fprintf(w, "**%s**  \n`%s`  \n%s\n\n", r.title(), r.Command, r.paramLine())
	writeMDRow(w, header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = "---"
	}
	writeMDRow(w, sep)
	for _, t := range r.Targets {
		writeMDRow(w, row(t))
	}
	r.writeDetails(w, true)
	return nil
}

func writeMDRow(w io.Writer, cells []string) {
	esc := make([]string, len(cells))
	for i, c := range cells {
		esc[i] = strings.ReplaceAll(c, "|", `\|`)
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(esc, " | "))
}

// writeDetails writes the per-round throughput, memory, step latencies,
// extra figures and first errors of each target.
func (r *Report) writeDetails(w io.Writer, md bool) {
	bullet := "  "
	if md {
		bullet = "- "
	}
	fmt.Fprintln(w)
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "%swarning: %s\n", bullet, warn)
	}
	for _, t := range r.Targets {
		if t.Unsupported != "" {
			fmt.Fprintf(w, "%s%s: %s\n", bullet, t.Name, t.Unsupported)
			continue
		}
		if t.Failed != "" {
			fmt.Fprintf(w, "%s%s: failed: %s\n", bullet, t.Name, t.Failed)
			continue
		}
		var parts []string
		rounds := make([]string, len(t.RoundOpsPerSec))
		for i, v := range t.RoundOpsPerSec {
			rounds[i] = Thousands(v)
		}
		parts = append(parts, "rounds ops/s: "+strings.Join(rounds, ", "))
		if t.ProcCPUSeconds > 0 {
			parts = append(parts, fmt.Sprintf("process CPU %.2f s", t.ProcCPUSeconds))
		}
		if m := t.Memory; m != nil {
			parts = append(parts, fmt.Sprintf("RSS before %s, peak %s, after %s, HWM %s", MiB(m.Before), MiB(m.Peak), MiB(m.After), MiB(m.HWM)))
		}
		keys := make([]string, 0, len(t.Extra))
		for k := range t.Extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %v", k, formatExtra(t.Extra[k])))
		}
		if t.FirstError != "" {
			parts = append(parts, fmt.Sprintf("first error: %q", t.FirstError))
		}
		fmt.Fprintf(w, "%s%s: %s\n", bullet, t.Name, strings.Join(parts, "; "))
	}
	for _, t := range r.Targets {
		if len(t.Steps) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s: latency per step (ms)\n\n", t.Name)
		hdr := []string{"step", "count", "p50", "p90", "p99", "p99.9", "max"}
		rows := [][]string{}
		for _, s := range t.Steps {
			l := s.Latency
			rows = append(rows, []string{s.Name, strconv.FormatInt(l.Count, 10), ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max)})
		}
		if md {
			writeMDRow(w, hdr)
			writeMDRow(w, []string{"---", "---", "---", "---", "---", "---", "---"})
			for _, rw := range rows {
				writeMDRow(w, rw)
			}
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.Join(hdr, "\t")+"\t")
		for _, rw := range rows {
			fmt.Fprintln(tw, strings.Join(rw, "\t")+"\t")
		}
		_ = tw.Flush()
	}
}

func formatExtra(v any) string {
	if f, ok := v.(float64); ok {
		if f == float64(int64(f)) {
			return Thousands(f)
		}
		return fmt.Sprintf("%.2f", f)
	}
	return fmt.Sprint(v)
}
