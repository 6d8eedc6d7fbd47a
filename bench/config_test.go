package main

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/bench/internal/report"
)

func TestParseArgsDefaults(t *testing.T) {
	c, err := parseArgs([]string{"-proxy", "127.0.0.1:6380", "-direct", "127.0.0.1:7001, 127.0.0.1:7002"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.scenario != "getset" || c.rounds != 3 || c.n != 100000 || c.load.Conns != 50 || c.load.Pipeline != 1 ||
		c.load.SetRatio != 1 || c.load.GetRatio != 1 || len(c.direct) != 2 || c.direct[1] != "127.0.0.1:7002" {
		t.Errorf("defaults: %+v", c)
	}
	for _, tc := range []struct {
		args           []string
		conns, pipe    int
		n              int64
		duration       time.Duration
		setR, getR     int
		scenarioReason string
	}{
		{[]string{"-scenario", "pipeline"}, 50, 16, 100000, 0, 1, 1, "pipeline defaults to 16"},
		{[]string{"-scenario", "conns"}, 1000, 100, 1000 * 100 * 10, 0, 1, 1, "conns: 1000×100, ten batches each"},
		{[]string{"-scenario", "conns", "-conns", "10", "-pipeline", "5"}, 10, 5, 500, 0, 1, 1, "conns with explicit shape"},
		{[]string{"-scenario", "llm"}, 16, 1, 2000, 0, 1, 1, "llm: 16 conversations at once, 2000 flows"},
		{[]string{"-scenario", "pubsub"}, 50, 1, 20000, 0, 1, 1, "pubsub: 20000 messages"},
		{[]string{"-duration", "2s", "-ratio", "1:10"}, 50, 1, 0, 2 * time.Second, 1, 10, "duration replaces -n"},
		{[]string{"-ratio", "0:1"}, 50, 1, 100000, 0, 0, 1, "GET only"},
	} {
		c, err := parseArgs(append([]string{"-proxy", "h:1"}, tc.args...), io.Discard)
		if err != nil {
			t.Errorf("%s: %v", tc.scenarioReason, err)
			continue
		}
		if c.load.Conns != tc.conns || c.load.Pipeline != tc.pipe || c.n != tc.n || c.duration != tc.duration ||
			c.load.SetRatio != tc.setR || c.load.GetRatio != tc.getR {
			t.Errorf("%s: got conns %d pipeline %d n %d duration %s ratio %d:%d", tc.scenarioReason,
				c.load.Conns, c.load.Pipeline, c.n, c.duration, c.load.SetRatio, c.load.GetRatio)
		}
	}
}

func TestParseArgsOthers(t *testing.T) {
	c, err := parseArgs([]string{"-other", "predixy=127.0.0.1:7617", "-other", "overlord=127.0.0.1:26379", "-other-pid", "predixy=99"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.others) != 2 || c.others[1].name != "overlord" || c.others[1].addr != "127.0.0.1:26379" || c.otherPID["predixy"] != 99 {
		t.Errorf("others %+v pids %v", c.others, c.otherPID)
	}
}

func TestParseArgsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no target"},
		{[]string{"-local", "-proxy", "h:1"}, "drop -proxy and -direct"},
		{[]string{"-proxy", "h:1", "-procs", "2"}, "-procs needs -local"},
		{[]string{"-proxy", "nohostport"}, `-proxy "nohostport": want host:port`},
		{[]string{"-direct", "h:1,bad"}, "want host:port"},
		{[]string{"-other", "x"}, "want name=host:port"},
		{[]string{"-other", "proxy=h:1"}, `the name "proxy" is taken`},
		{[]string{"-other", "a=h:1", "-other", "a=h:2"}, `the name "a" is taken`},
		{[]string{"-proxy", "h:1", "-other-pid", "ghost=5"}, `no -other target named "ghost"`},
		{[]string{"-proxy", "h:1", "-other-pid", "x=-5"}, "positive process id"},
		{[]string{"-direct", "h:1", "-proxy-pid", "5"}, "-proxy-pid needs -proxy"},
		{[]string{"-proxy", "h:1", "-scenario", "nope"}, `-scenario "nope": want one of getset, pipeline`},
		{[]string{"-proxy", "h:1", "-n", "10", "-duration", "1s"}, "-n or -duration, not both"},
		{[]string{"-proxy", "h:1", "-n", "-3"}, "-n -3"},
		{[]string{"-proxy", "h:1", "-duration", "-1s"}, "-duration -1s"},
		{[]string{"-proxy", "h:1", "-conns", "0"}, "-conns 0: want 1..50000"},
		{[]string{"-proxy", "h:1", "-pipeline", "20000"}, "-pipeline 20000: want 1..10000"},
		{[]string{"-proxy", "h:1", "-rounds", "0"}, "-rounds 0"},
		{[]string{"-proxy", "h:1", "-size", "0"}, "-size 0"},
		{[]string{"-proxy", "h:1", "-multi", "0"}, "-multi 0"},
		{[]string{"-proxy", "h:1", "-ratio", "1-1"}, `-ratio "1-1": want SET:GET`},
		{[]string{"-proxy", "h:1", "-ratio", "0:0"}, "not both 0"},
		{[]string{"-proxy", "h:1", "-scenario", "pubsub", "-size", "8"}, "at least 24 bytes"},
		{[]string{"-proxy", "h:1", "-hit-ratio", "1.5"}, "-hit-ratio 1.5: want 0..1"},
		{[]string{"-proxy", "h:1", "-prefix", ""}, "-prefix"},
		{[]string{"-proxy", "h:1", "extra"}, `unexpected argument "extra"`},
		{[]string{"-proxy", "h:1", "-timeout", "0s"}, "-timeout 0s"},
	} {
		_, err := parseArgs(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseArgs(%q): err %v, want it to contain %q", tc.args, err, tc.want)
		}
	}
	if _, err := parseArgs([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: err %v, want flag.ErrHelp", err)
	}
}

func TestWarnings(t *testing.T) {
	rep := &report.Report{Targets: []report.Target{
		{Name: "proxy", BenchCPU: 1.7, Ops: 90, Errors: 10},
		{Name: "direct", BenchCPU: 0.5, Ops: 100},
	}}
	w := warnings(rep, 2)
	if len(w) != 2 || !strings.Contains(w[0], "proxy: the load generator used 1.70 of 2 cores") || w[1] != "proxy: 10 of 100 operations failed" {
		t.Errorf("warnings %q", w)
	}
	if w := warnings(rep, 4); len(w) != 1 {
		t.Errorf("with 4 cores: warnings %q, want only the failures", w)
	}
}
