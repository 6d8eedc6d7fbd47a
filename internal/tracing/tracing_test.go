package tracing

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

func TestEnabled(t *testing.T) {
	cases := []struct {
		flag bool
		env  map[string]string
		want bool
	}{
		{false, nil, false},
		{true, nil, true},
		{false, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, true},
		{false, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, true},
		{false, map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{true, map[string]string{"OTEL_TRACES_EXPORTER": "none"}, false},
		{true, map[string]string{"OTEL_SDK_DISABLED": "true"}, false},
		{false, map[string]string{"OTEL_SERVICE_NAME": "x"}, false},
	}
	for _, c := range cases {
		if got := Enabled(c.flag, func(k string) string { return c.env[k] }); got != c.want {
			t.Errorf("Enabled(%v, %v) = %v, want %v", c.flag, c.env, got, c.want)
		}
	}
}

// TestStartExportsOTLP points the exporter at an OTLP/HTTP endpoint through
// the standard environment variables and checks that a span arrives there
// with the proxy's service name.
func TestStartExportsOTLP(t *testing.T) {
	var mu sync.Mutex
	var got []byte
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, path = append(got, b...), r.URL.Path
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "none")
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
	ctx := context.Background()
	p, err := Start(ctx, func(k string) string { return map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}[k] }, "v-test")
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.Tracer().Start(ctx, "probe-span")
	span.End()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if path != "/v1/traces" {
		t.Fatalf("exporter posted to %q, want /v1/traces", path)
	}
	for _, want := range []string{"probe-span", ServiceName, "v-test"} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("exported payload lacks %q", want)
		}
	}

	if _, err := Start(ctx, func(k string) string { return map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"}[k] }, "v"); err == nil {
		t.Error("an unknown protocol was accepted")
	}
}
