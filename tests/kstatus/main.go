// kstatus-read: how GitOps tools read an object's health, with their own libraries.
//
// Reads {"fluxHealthCheck": {"current": ..., "inProgress": ..., "failed": ...}, "objects": [...]}
// on stdin and prints one JSON result per object:
//   - kstatus:     sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute (kpt, the upstream library)
//   - fluxKstatus: github.com/fluxcd/cli-utils's copy of it (Flux's default health check)
//   - fluxCel:     github.com/fluxcd/pkg/runtime/cel's StatusEvaluator, the code behind a
//     Kustomization's spec.healthCheckExprs (omitted when no expressions are given)
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	fluxstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/fluxcd/pkg/apis/kustomize"
	fluxcel "github.com/fluxcd/pkg/runtime/cel"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type input struct {
	FluxHealthCheck *kustomize.HealthCheckExpressions `json:"fluxHealthCheck"`
	Objects         []json.RawMessage                 `json:"objects"`
}

type reading struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

type output struct {
	Kstatus     reading  `json:"kstatus"`
	FluxKstatus reading  `json:"fluxKstatus"`
	FluxCel     *reading `json:"fluxCel,omitempty"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kstatus-read: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail("cannot decode the input: %v", err)
	}
	var evaluator *fluxcel.StatusEvaluator
	if in.FluxHealthCheck != nil {
		var err error
		if evaluator, err = fluxcel.NewStatusEvaluator(in.FluxHealthCheck); err != nil {
			fail("bad Flux health check expressions: %v", err)
		}
	}
	results := make([]output, 0, len(in.Objects))
	for i, raw := range in.Objects {
		// Kubernetes' JSON decoder: integers become int64, as the API machinery expects.
		var obj map[string]any
		if err := utiljson.Unmarshal(raw, &obj); err != nil {
			fail("objects[%d]: %v", i, err)
		}
		u := &unstructured.Unstructured{Object: obj}
		upstream, err := status.Compute(u.DeepCopy())
		if err != nil {
			fail("objects[%d]: kstatus: %v", i, err)
		}
		flux, err := fluxstatus.Compute(u.DeepCopy())
		if err != nil {
			fail("objects[%d]: Flux kstatus: %v", i, err)
		}
		out := output{
			Kstatus:     reading{string(upstream.Status), upstream.Message},
			FluxKstatus: reading{string(flux.Status), flux.Message},
		}
		if evaluator != nil {
			res, err := evaluator.Evaluate(context.Background(), u.DeepCopy())
			if err != nil {
				fail("objects[%d]: Flux healthCheckExprs: %v", i, err)
			}
			out.FluxCel = &reading{Status: string(res.Status), Message: res.Message}
		}
		results = append(results, out)
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fail("cannot write the results: %v", err)
	}
}
