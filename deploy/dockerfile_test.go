package deploy

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfile checks the image the compose file builds: multi-stage, a
// static binary, a non-root distroless final stage whose binary is where the
// compose healthcheck and entrypoint expect it, and a .dockerignore that keeps
// secrets and local data out of the build context.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(froms) != 2 || !strings.HasPrefix(froms[0][1], "golang:") || !strings.HasPrefix(froms[1][1], "gcr.io/distroless/static") {
		t.Fatalf("stages %v, want a golang build stage and a distroless/static final stage", froms)
	}
	final := df[strings.LastIndex(df, "\nFROM "):]
	for _, want := range []string{"CGO_ENABLED=0 go build", "./cmd/proxy"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for _, want := range []string{"COPY --from=build /out/proxy /proxy", "USER nonroot", `ENTRYPOINT ["/proxy"]`, `HEALTHCHECK`} {
		if !strings.Contains(final, want) {
			t.Errorf("final stage lacks %q", want)
		}
	}
	if hc := loadCompose(t).Services["proxy"].HealthCheck.Test; hc[1] != "/proxy" {
		t.Errorf("compose healthcheck runs %q, the image has /proxy", hc[1])
	}
	ign, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"deploy/secrets", ".data", ".git"} {
		if !strings.Contains(string(ign), want+"\n") {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}
