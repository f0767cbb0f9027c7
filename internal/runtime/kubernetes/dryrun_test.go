package kubernetes

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/kubetest"
)

// The golden renderings are objects the real API server accepts, both as
// server-side applies and as the create Scale makes of a new release.
func TestRenderedObjectsPassServerSideDryRun(t *testing.T) {
	t.Parallel()
	c := kubetest.Require(t)
	ns := c.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dryApply := metav1.ApplyOptions{FieldManager: FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}}
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := ReplicaSet(tc.t, RenderOptions{Namespace: ns})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Client.AppsV1().ReplicaSets(ns).Apply(ctx, rs, dryApply)
			if err != nil {
				t.Fatalf("API server refused the replicaset: %v", err)
			}
			if got.Spec.Template.Spec.Containers[0].Image != tc.t.Image {
				t.Errorf("accepted replicaset runs %q, want %q", got.Spec.Template.Spec.Containers[0].Image, tc.t.Image)
			}

			b, err := json.Marshal(rs)
			if err != nil {
				t.Fatal(err)
			}
			var typed appsv1.ReplicaSet
			if err := json.Unmarshal(b, &typed); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Client.AppsV1().ReplicaSets(ns).Create(ctx, &typed,
				metav1.CreateOptions{FieldManager: FieldManager, DryRun: []string{metav1.DryRunAll}}); err != nil {
				t.Fatalf("API server refused the replicaset as a create: %v", err)
			}

			pdb := PodDisruptionBudget(tc.t.App, ns)
			if _, err := c.Client.PolicyV1().PodDisruptionBudgets(ns).Apply(ctx, pdb, dryApply); err != nil {
				t.Fatalf("API server refused the budget: %v", err)
			}
			for _, v := range tc.t.Volumes {
				for _, class := range []string{"", "local-path"} {
					got, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Apply(ctx, Claim(tc.t.App, v, ns, class), dryApply)
					if err != nil {
						t.Fatalf("API server refused the claim of volume %s (storage class %q): %v", v.Name, class, err)
					}
					if want := claimSize(v); got.Spec.Resources.Requests.Storage().Cmp(want) != 0 {
						t.Errorf("accepted claim of %s asks %s, want %s", v.Name, got.Spec.Resources.Requests.Storage(), want.String())
					}
				}
			}

			svc, err := Service(tc.t, RenderOptions{Namespace: ns})
			if err != nil {
				t.Fatal(err)
			}
			gotSvc, err := c.Client.CoreV1().Services(ns).Apply(ctx, svc, dryApply)
			if err != nil {
				t.Fatalf("API server refused the service: %v", err)
			}
			if gotSvc.Spec.ClusterIP != "None" {
				t.Errorf("accepted service has cluster IP %q, want None (headless)", gotSvc.Spec.ClusterIP)
			}
		})
	}
	// Dry runs leave nothing behind.
	list, err := c.Client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 0 {
		t.Errorf("dry runs left replicasets: %v, %v", list, err)
	}
}
