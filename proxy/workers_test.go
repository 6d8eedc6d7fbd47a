package proxy

import (
	"sync"
	"testing"
	"time"
)

// TestWorkersReuse: a job runs on an idle worker when there is one, on a
// new one otherwise; workers idle too long exit; close ends the idle ones.
func TestWorkersReuse(t *testing.T) {
	p := &workers{idleFor: 200 * time.Millisecond}

	// Sequential jobs share one worker: it goes back to idle each time,
	// and no second one appears.
	done := make(chan struct{})
	for range 3 {
		p.run(func() { done <- struct{}{} })
		<-done
		waitIdle(t, p, 1)
	}

	// Concurrent jobs get a worker each, and all run.
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(4)
	for range 4 {
		p.run(func() {
			started.Done()
			<-release
		})
	}
	started.Wait() // four jobs running at once: four workers
	if n := p.idleCount(); n != 0 {
		t.Fatalf("%d idle workers while four jobs run, want 0", n)
	}
	close(release)
	waitIdle(t, p, 4)

	// Idle workers exit after idleFor.
	waitIdle(t, p, 0)

	// After close, idle workers are gone and a job still runs.
	p.run(func() { done <- struct{}{} })
	<-done
	waitIdle(t, p, 1)
	p.close()
	if n := p.idleCount(); n != 0 {
		t.Fatalf("%d idle workers after close", n)
	}
	p.run(func() { done <- struct{}{} })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a job run after close did not run")
	}
	time.Sleep(20 * time.Millisecond)
	if n := p.idleCount(); n != 0 {
		t.Fatalf("a worker of a closed pool went idle (%d)", n)
	}
}

func waitIdle(t *testing.T, p *workers, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.idleCount() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle workers, want %d", p.idleCount(), want)
		}
		time.Sleep(time.Millisecond)
	}
}
