// Command bench is clusterproxy's load tool: it runs one scenario against
// the proxy, the cluster directly and any other endpoint in alternating
// rounds of one run, so that ratios hold on a noisy machine, and reports
// throughput, HDR latency percentiles, the ratio to direct access, the
// target process's CPU time and memory, and its own CPU use.
//
//	go run ./bench -local -scenario getset -rounds 3
//	go run ./bench -proxy 127.0.0.1:6380 -proxy-pid 1234 -direct 127.0.0.1:7001 -scenario pipeline
//
// See the README's Benchmarks section and `go run ./bench -h`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := 0
	if err := mainErr(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		code = 1
		if errors.Is(err, flag.ErrHelp) {
			code = 0
		} else {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
	}
	stop()
	os.Exit(code)
}

func mainErr(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseArgs(args, stderr)
	if err != nil {
		return err
	}
	return run(ctx, cfg, stdout, stderr)
}
