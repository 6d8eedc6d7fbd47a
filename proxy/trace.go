package proxy

import (
	"context"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Span attribute keys of a client command's span.
const (
	attrCommand   = attribute.Key("db.operation.name")
	attrSystem    = attribute.Key("db.system.name")
	attrSlot      = attribute.Key("clusterproxy.slot")
	attrNode      = attribute.Key("clusterproxy.node")
	attrRedirects = attribute.Key("clusterproxy.redirects")
	attrClient    = attribute.Key("clusterproxy.client_id")
)

// traceCall records c as one span, after its reply was written: it starts at
// c.start and ends at end, so nothing is spent on tracing while the command
// runs. Routed commands carry their slot, node, redirections and the
// "written" and "replied" events.
func (s *session) traceCall(t trace.Tracer, c *call, failed bool, out []byte, end time.Time) {
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, attrSystem.String("redis"), attrCommand.String(c.name), attrClient.Int64(s.id))
	routed := c.routed || c.block
	if routed {
		attrs = append(attrs, attrSlot.Int(c.req.Slot), attrNode.String(c.req.NodeAddr()), attrRedirects.Int(c.req.Redirects()))
	}
	_, span := t.Start(context.Background(), c.name,
		trace.WithTimestamp(c.start), trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	if routed {
		if w := c.req.WrittenAt; !w.IsZero() {
			span.AddEvent("written", trace.WithTimestamp(w))
		}
		if r := c.req.RepliedAt; !r.IsZero() {
			span.AddEvent("replied", trace.WithTimestamp(r))
		}
	}
	if failed {
		span.SetStatus(codes.Error, string(resp.ErrorText(out)))
	}
	span.End(trace.WithTimestamp(end))
}
