package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

// TestBenchGateway runs 'licet bench gateway' briefly on every target and
// mode: both servers answer, and the gateway lets every request through, so
// that the figures measure the license check rather than fast refusals.
func TestBenchGateway(t *testing.T) {
	var out, stderr bytes.Buffer
	err := Run(context.Background(), []string{"bench", "gateway", "--duration", "1s", "--connections", "4",
		"--target", "both", "--mode", "both", "--json"}, &out, &stderr)
	if err != nil {
		t.Fatalf("bench gateway: %v\n%s%s", err, out.String(), stderr.String())
	}
	var reports []*gatewayReport
	if err := json.Unmarshal(out.Bytes(), &reports); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if len(reports) != 4 {
		t.Fatalf("%d reports, want 4 (2 targets x 2 modes)", len(reports))
	}
	for _, r := range reports {
		if r.Bare.OK == 0 || r.Gateway.OK == 0 || r.Bare.PerSecond <= 0 || r.Gateway.PerSecond <= 0 {
			t.Errorf("%s/%s: no throughput: bare %v, gateway %v", r.Target, r.Mode, r.Bare, r.Gateway)
		}
		if r.Gateway.OK != r.Gateway.Requests || r.Gateway.Rejected+r.Gateway.Failed != 0 {
			t.Errorf("%s/%s: the gateway refused requests: %v %v", r.Target, r.Mode, r.Gateway, r.Gateway.FirstErrors)
		}
		if r.Bare.OK != r.Bare.Requests {
			t.Errorf("%s/%s: the bare server failed requests: %v %v", r.Target, r.Mode, r.Bare, r.Bare.FirstErrors)
		}
		if len(r.BarePhases) != r.Phases/2 || len(r.GatewayPhases) != r.Phases/2 || r.Ratio <= 0 || r.MedianPairRatio <= 0 {
			t.Errorf("%s/%s: phases %v %v, ratio %v", r.Target, r.Mode, r.BarePhases, r.GatewayPhases, r.Ratio)
		}
	}
}
