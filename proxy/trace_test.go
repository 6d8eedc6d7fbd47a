package proxy_test

import (
	"context"
	"testing"

	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func spanAttrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

func newTracer(t *testing.T) (*tracetest.InMemoryExporter, *sdktrace.TracerProvider) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return exp, tp
}

// TestTracing records one span per client command in an in-memory exporter:
// name, command, slot, node, redirects, the written/replied events in order
// within the span, and an error status for an error reply.
func TestTracing(t *testing.T) {
	exp, tp := newTracer(t)
	p := startProxy(t, shared, proxy.Config{Tracer: tp.Tracer("test")}, router.Options{})
	ctx := context.Background()
	c := p.client(t, 2)
	const key = "trace:k"
	c.Ping(ctx) // the connection's handshake (HELLO, CLIENT SETINFO) first
	exp.Reset()
	if err := c.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.Ping(ctx)
	c.Do(ctx, "NOSUCHCOMMAND")
	spans := exp.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3 (set, ping, unknown): %v", len(spans), spans)
	}
	set := spans[0]
	a := spanAttrs(set)
	slot := router.Slot([]byte(key))
	if set.Name != "set" || a["db.operation.name"].AsString() != "set" || a["db.system.name"].AsString() != "redis" ||
		a["clusterproxy.slot"].AsInt64() != int64(slot) || a["clusterproxy.node"].AsString() != p.Router.MasterOf(slot) ||
		a["clusterproxy.redirects"].AsInt64() != 0 {
		t.Errorf("set span %s %v", set.Name, a)
	}
	if len(set.Events) != 2 || set.Events[0].Name != "written" || set.Events[1].Name != "replied" ||
		set.Events[0].Time.Before(set.StartTime) || set.Events[1].Time.Before(set.Events[0].Time) || set.EndTime.Before(set.Events[1].Time) {
		t.Errorf("set span events %+v between %v and %v", set.Events, set.StartTime, set.EndTime)
	}
	if set.Status.Code == codes.Error {
		t.Errorf("set span status %v", set.Status)
	}
	if ping := spanAttrs(spans[1]); spans[1].Name != "ping" || ping["clusterproxy.node"].Type() != attribute.INVALID {
		t.Errorf("ping span %s %v: a local command has no node", spans[1].Name, ping)
	}
	if spans[2].Name != "unknown" || spans[2].Status.Code != codes.Error {
		t.Errorf("unknown command span %s status %v", spans[2].Name, spans[2].Status)
	}
}

// TestTracingRedirect: a command redirected by ASK during a slot migration
// has a span with redirects 1 and the node that answered.
func TestTracingRedirect(t *testing.T) {
	cl := testcluster.Start(t)
	exp, tp := newTracer(t)
	p := startProxy(t, cl, proxy.Config{Tracer: tp.Tracer("test")}, router.Options{})
	ctx := context.Background()
	c := p.client(t, 2)
	const key = "{traceask}:missing"
	slot := router.Slot([]byte(key))
	from, to := migrationEnds(t, cl, slot)
	if err := cl.BeginMigration(ctx, slot, from, to); err != nil {
		t.Fatal(err)
	}
	c.Ping(ctx)
	exp.Reset()
	// The key is not on the source: it answers ASK, the target answers.
	if err := c.Get(ctx, key).Err(); err == nil || err.Error() != "redis: nil" {
		t.Fatalf("GET: %v", err)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	a := spanAttrs(spans[0])
	if a["clusterproxy.redirects"].AsInt64() != 1 || a["clusterproxy.node"].AsString() != to {
		t.Errorf("span after ASK: %v, want redirects 1 and node %s", a, to)
	}
}
