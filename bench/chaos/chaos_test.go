package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestChaosOneKill runs the chaos loop for one kill of a master: the run
// must see the failover and the restart, and lose no acknowledged write.
func TestChaosOneKill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := Config{Duration: 2 * time.Second, Clients: 4, Keys: 200, Pause: time.Second,
		HeldAfter: 100 * time.Millisecond, Dir: t.TempDir(), Seed: 1}
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Kills != 1 || len(res.Failovers) != 1 {
		t.Fatalf("kills %d, failovers %v; want one", res.Kills, res.Failovers)
	}
	if res.Ops == 0 || res.AckedWrites == 0 || res.CheckedKeys == 0 {
		t.Fatalf("no load: %+v", res)
	}
	if res.LostWrites != 0 || res.Errors != 0 {
		t.Fatalf("lost %d acknowledged writes (%v), %d errors %v", res.LostWrites, res.LostExamples, res.Errors, res.ErrorKinds)
	}
	if res.MaxHoldMs < 1000 {
		t.Errorf("longest hold %.0f ms: requests for the killed master's slots were not held through the failover", res.MaxHoldMs)
	}
	var out bytes.Buffer
	Print(&out, cfg, res)
	if !strings.Contains(out.String(), "lost: 0") {
		t.Fatalf("report:\n%s", out.String())
	}
	t.Logf("\n%s", out.String())
}
