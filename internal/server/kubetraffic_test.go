package server

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/kubetest"
	"github.com/skiff-sh/skiff/internal/runtime/kubernetes"
	"github.com/skiff-sh/skiff/internal/testenv"
)

// Real requests through the edge of `skiff server --runtime kubernetes`
// to pods, step by step through every kind of rollout. kwok runs no
// containers, so the test runs in a network namespace of its own where
// the pod range is local and a stand-in listens at each pod's IP and
// port, answering "release N pod NAME" from the pod's labels.
func TestKubernetesTrafficThroughTheEdge(t *testing.T) {
	if !kubetest.InNetNS(t) {
		return
	}
	edgeAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	cl, c, ns := kubeServerAt(t, edgeAddr)
	standIns := c.StartStandIns(t, ns, func(p *corev1.Pod) string {
		return fmt.Sprintf("release %s pod %s", p.Labels[kubernetes.LabelRelease], p.Name)
	})
	e := &edgeProbe{addr: edgeAddr, c: c, ns: ns, http: &http.Client{Timeout: 5 * time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Every pod a rollout removes must have been drained first: marked
	// (which takes it out of the edge's routes before anything deletes
	// it) and chosen by its ReplicaSet for its lowest deletion cost. One
	// deleted unmarked was still taking requests. (A lost node's pods
	// are deleted by the pod garbage collector, which no one drains.)
	scenario := func(name string, fn func(t *testing.T)) {
		start := time.Now()
		mark := len(standIns.Deleted())
		ok := t.Run(name, fn)
		t.Logf("scenario %s: %s", name, time.Since(start).Round(time.Millisecond))
		for _, p := range standIns.Deleted()[mark:] {
			if p.Annotations[kubernetes.AnnotationDraining] != "true" && !lostWithNode(p) {
				t.Errorf("%s: pod %s was deleted without being drained first", name, p.Name)
			}
		}
		if !ok {
			t.FailNow()
		}
	}

	scenario("deploy", func(t *testing.T) {
		rel := deploySpec(t, cl, appSpec("shop", 1, ""))
		mustComplete(t, cl, "shop", rel.Number)
		e.awaitServedBy(t, "shop.localhost", "shop", rel.Number, 3)
	})

	scenario("rolling", func(t *testing.T) {
		var rel int
		res := e.underLoad(t, "shop.localhost", "rolling deploy", func() {
			rel = deploySpec(t, cl, appSpec("shop", 2, "")).Number
			mustComplete(t, cl, "shop", rel)
		})
		if res.byRelease[rel] == 0 || res.byRelease[rel-1] == 0 {
			t.Errorf("answers by release %v: want both releases to answer during the rollout", res.byRelease)
		}
		// Complete means the edge serves the new release alone.
		e.servedAlone(t, "shop.localhost", "shop", rel, 3)
	})

	scenario("rollback", func(t *testing.T) {
		var back int
		res := e.underLoad(t, "shop.localhost", "rollback", func() {
			rel, err := cl.Rollback(ctx, "shop", 1)
			if err != nil {
				t.Fatal(err)
			}
			back = rel.Number
			mustComplete(t, cl, "shop", back)
		})
		if res.byRelease[back] == 0 || res.byRelease[back-1] == 0 {
			t.Errorf("answers by release %v: want both releases to answer during the rollback", res.byRelease)
		}
		e.servedAlone(t, "shop.localhost", "shop", back, 3)
		awaitOnly(t, c, ns, "shop", back, testImage("shop", 1), 3)
	})

	scenario("canary", func(t *testing.T) {
		first, second := deployTwo(t, cl, "tea", "deploy: {strategy: canary, steps: [{weight: 50%, pause: manual}]}\n")
		// At 50% of 3 replicas the canary needs 2 pods; the stable
		// release keeps all 3 until the canary takes every request.
		e.awaitSizes(t, "tea", map[int]int{first: 3, second: 2})
		kubetest.Await(t, time.Minute, "both releases of tea answering, about half each", func() error {
			counts, err := e.round("tea.localhost", 100)
			if err != nil {
				return err
			}
			by := byRelease(counts)
			if n := by[second]; n < 25 || n > 75 || by[first]+n != 100 {
				return fmt.Errorf("answers by release %v", by)
			}
			return nil
		})
		mustBe(t, cl, "tea", second, "pending")
		e.awaitSizes(t, "tea", map[int]int{first: 3, second: 2})

		if _, err := cl.Promote(ctx, "tea", false); err != nil {
			t.Fatal(err)
		}
		mustComplete(t, cl, "tea", second)
		e.servedAlone(t, "tea.localhost", "tea", second, 3)
		awaitOnly(t, c, ns, "tea", second, testImage("tea", 2), 3)
	})

	scenario("blue-green", func(t *testing.T) {
		first, second := deployTwo(t, cl, "bg", "deploy: {strategy: blue-green, auto_promote: false}\n")
		e.awaitSizes(t, "bg", map[int]int{first: 3, second: 3})
		preview := strconv.Itoa(second) + ".bg.localhost"
		e.awaitServedBy(t, preview, "bg", second, 3)
		e.expectOnly(t, "bg.localhost", "bg", first, 30)
		mustBe(t, cl, "bg", second, "pending")

		if _, err := cl.Promote(ctx, "bg", false); err != nil {
			t.Fatal(err)
		}
		mustComplete(t, cl, "bg", second)
		e.servedAlone(t, "bg.localhost", "bg", second, 3)
		// The old release stays, without traffic, for a quick rollback.
		e.awaitSizes(t, "bg", map[int]int{first: 3, second: 3})
	})

	// Last: pods of a deleted node wait about a minute for the pod
	// garbage collector.
	scenario("node lost", func(t *testing.T) {
		rels, err := cl.Releases(ctx, "shop")
		if err != nil || len(rels) == 0 {
			t.Fatalf("releases of shop: %v, %v", rels, err)
		}
		current := slices.MaxFunc(rels, func(a, b api.Release) int { return a.Number - b.Number }).Number
		before := e.pods(t, "shop", current)
		var node string
		for _, p := range before {
			node = p.Spec.NodeName
			break
		}
		onLost := map[string]bool{}
		for name, p := range before {
			if p.Spec.NodeName == node {
				onLost[name] = true
			}
		}
		lost := len(onLost)
		start := time.Now()
		e.underLoad(t, "shop.localhost", "losing node "+node, func() {
			// The lost node's stand-ins answer on until the edge has
			// dropped them, so an answer from one of them shows the edge
			// still routing there: it must stop within seconds, not wait
			// a minute for the pod garbage collector.
			c.DeleteNode(t, node)
			notLost := func(n int) error {
				counts, err := e.round("shop.localhost", n)
				if err != nil {
					return err
				}
				for a := range counts {
					if _, pod, ok := parseAnswer(a); ok && onLost[pod] {
						return fmt.Errorf("pod %s of the lost node still answers: %v", pod, counts)
					}
				}
				return nil
			}
			kubetest.Await(t, 5*time.Second, "the edge to stop sending to the pods of "+node, func() error { return notLost(30) })
			t.Logf("the edge stopped sending to the pods of %s %s after it was deleted", node, time.Since(start).Round(time.Millisecond))
			if err := notLost(90); err != nil {
				t.Errorf("after the edge dropped them: %v", err)
			}
			standIns.StopNode(node)
			e.logLost(t, cl, "shop", before, node)
			kubetest.Await(t, 3*time.Minute, "shop's pods replaced off node "+node, func() error {
				pods := e.pods(t, "shop", current)
				if len(pods) != 3 {
					return fmt.Errorf("%d pods: %v", len(pods), slices.Collect(maps.Keys(pods)))
				}
				for name, p := range pods {
					if p.Spec.NodeName == node {
						return fmt.Errorf("pod %s still on %s", name, node)
					}
				}
				return nil
			})
			t.Logf("pods rescheduled %s after node %s was deleted", time.Since(start).Round(time.Millisecond), node)
			e.awaitInstancesAtPods(t, cl, "shop", current)
			e.awaitServedBy(t, "shop.localhost", "shop", current, 3)
			t.Logf("edge serves only the pods off %s %s after it was lost", node, time.Since(start).Round(time.Millisecond))
		})
		replaced := 0
		for name := range e.pods(t, "shop", current) {
			if _, ok := before[name]; !ok {
				replaced++
			}
		}
		if replaced != lost {
			t.Errorf("%d pods replaced; want the %d on the lost node", replaced, lost)
		}
	})
}
