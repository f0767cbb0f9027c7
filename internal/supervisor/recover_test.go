package supervisor

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
)

func TestPlanRecovery(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	h := func(app string, rel int, id string, pid int) Handle {
		return Handle{ID: id, App: app, Release: rel, PID: pid, StartedAt: t0.Add(time.Duration(pid) * time.Second),
			Ref: fmt.Sprintf("start:%d", 1000+pid)}
	}
	// started is the record of the process h(..., pid) describes.
	started := func(id string, pid int) *Handle {
		return &Handle{ID: id, PID: pid, Ref: fmt.Sprintf("start:%d", 1000+pid)}
	}
	rec := func(id string, order int, handle *Handle) instanceRecord {
		return instanceRecord{ID: id, Created: t0.Add(time.Duration(order) * time.Minute), Handle: handle}
	}
	set := func(app string, rel, size int, insts ...instanceRecord) setRecord {
		return setRecord{Template: instance.Template{App: app, Release: rel}, Size: size, Instances: insts}
	}
	tests := []struct {
		name    string
		state   []setRecord
		running []Handle
		adopted []string
		start   []string // ids; "new" for a fresh one
		orphans []string
		// impostors: "id/pid" of what is stopped as not the recorded
		// process.
		impostors []string
	}{
		{
			name:    "recorded and running are adopted",
			state:   []setRecord{set("a", 1, 2, rec("a-1-x", 1, started("a-1-x", 10)), rec("a-1-y", 2, started("a-1-y", 11)))},
			running: []Handle{h("a", 1, "a-1-x", 10), h("a", 1, "a-1-y", 11)},
			adopted: []string{"a-1-x", "a-1-y"},
		},
		{
			name:      "started but never recorded is stopped and started again",
			state:     []setRecord{set("a", 1, 2, rec("a-1-x", 1, started("a-1-x", 10)), rec("a-1-y", 2, nil))},
			running:   []Handle{h("a", 1, "a-1-x", 10), h("a", 1, "a-1-y", 11)},
			adopted:   []string{"a-1-x"},
			start:     []string{"a-1-y"},
			impostors: []string{"a-1-y/11"},
		},
		{
			name:      "a process with a recorded instance's identity is an impostor",
			state:     []setRecord{set("a", 1, 1, rec("a-1-x", 1, started("a-1-x", 10)))},
			running:   []Handle{h("a", 1, "a-1-x", 12)},
			start:     []string{"a-1-x"},
			impostors: []string{"a-1-x/12"},
		},
		{
			name:      "the recorded process is adopted beside an impostor started before it",
			state:     []setRecord{set("a", 1, 1, rec("a-1-x", 1, started("a-1-x", 10)))},
			running:   []Handle{h("a", 1, "a-1-x", 9), h("a", 1, "a-1-x", 10)},
			adopted:   []string{"a-1-x"},
			impostors: []string{"a-1-x/9"},
		},
		{
			name:      "the same pid started again (another start time) is an impostor",
			state:     []setRecord{set("a", 1, 1, rec("a-1-x", 1, started("a-1-x", 10)))},
			running:   []Handle{{ID: "a-1-x", App: "a", Release: 1, PID: 10, Ref: "start:99"}},
			start:     []string{"a-1-x"},
			impostors: []string{"a-1-x/10"},
		},
		{
			name:      "a record without a Ref proves nothing",
			state:     []setRecord{set("a", 1, 1, rec("a-1-x", 1, &Handle{ID: "a-1-x", PID: 10}))},
			running:   []Handle{{ID: "a-1-x", App: "a", Release: 1, PID: 10}},
			start:     []string{"a-1-x"},
			impostors: []string{"a-1-x/10"},
		},
		{
			name:    "recorded but dead is started again",
			state:   []setRecord{set("a", 1, 2, rec("a-1-x", 1, started("a-1-x", 10)), rec("a-1-y", 2, nil))},
			running: []Handle{h("a", 1, "a-1-x", 10)},
			adopted: []string{"a-1-x"},
			start:   []string{"a-1-y"},
		},
		{
			name:    "unknown set is orphaned",
			state:   []setRecord{set("a", 1, 1, rec("a-1-x", 1, started("a-1-x", 10)))},
			running: []Handle{h("a", 1, "a-1-x", 10), h("a", 2, "a-2-z", 12), h("b", 1, "b-1-q", 13)},
			adopted: []string{"a-1-x"},
			orphans: []string{"a-2-z", "b-1-q"},
		},
		{
			name:    "beyond size is orphaned, oldest kept",
			state:   []setRecord{set("a", 1, 1, rec("a-1-x", 2, started("a-1-x", 10)), rec("a-1-w", 1, started("a-1-w", 11)))},
			running: []Handle{h("a", 1, "a-1-x", 10), h("a", 1, "a-1-w", 11)},
			adopted: []string{"a-1-w"},
			orphans: []string{"a-1-x"},
		},
		{
			name:    "a removed instance that still runs is orphaned",
			state:   []setRecord{set("a", 1, 1, rec("a-1-x", 1, started("a-1-x", 10)))},
			running: []Handle{h("a", 1, "a-1-x", 10), h("a", 1, "a-1-gone", 11)},
			adopted: []string{"a-1-x"},
			orphans: []string{"a-1-gone"},
		},
		{
			name:    "a removed instance never takes a free slot",
			state:   []setRecord{set("a", 1, 1, rec("a-1-x", 1, started("a-1-x", 10)))},
			running: []Handle{h("a", 1, "a-1-gone", 11)},
			start:   []string{"a-1-x"},
			orphans: []string{"a-1-gone"},
		},
		{
			name:  "size without ids gets new ones",
			state: []setRecord{set("a", 1, 2, rec("a-1-x", 1, nil))},
			start: []string{"a-1-x", "new"},
		},
		{
			name:  "empty set stays",
			state: []setRecord{set("a", 1, 0)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planRecovery(stateFile{Version: stateVersion, Sets: tt.state}, tt.running, t0)
			var adopted, start, orphans []string
			for _, in := range p.adopted {
				adopted = append(adopted, in.id)
				if !in.running || in.h.PID == 0 {
					t.Errorf("adopted %s has no running handle", in.id)
				}
			}
			for _, in := range p.toStart {
				id := in.id
				if !slices.ContainsFunc(tt.state, func(r setRecord) bool {
					return slices.ContainsFunc(r.Instances, func(i instanceRecord) bool { return i.ID == id })
				}) {
					if !strings.HasPrefix(id, "a-1-") || len(id) != len("a-1-")+5 {
						t.Errorf("new id %q is not <app>-<release>-<5 chars>", id)
					}
					id = "new"
				}
				start = append(start, id)
			}
			for _, o := range p.orphans {
				orphans = append(orphans, o.ID)
			}
			var impostors []string
			for _, imp := range p.impostors {
				impostors = append(impostors, fmt.Sprintf("%s/%d", imp.h.ID, imp.h.PID))
				if !strings.Contains(imp.reason, fmt.Sprintf("pid %d", imp.h.PID)) {
					t.Errorf("impostor reason %q does not name pid %d", imp.reason, imp.h.PID)
				}
			}
			for _, in := range p.adopted {
				if r := recordOf(tt.state, in.id); r == nil || r.Handle == nil || in.h.PID != r.Handle.PID || in.h.Ref != r.Handle.Ref {
					t.Errorf("adopted %s as %+v, which is not the recorded process %+v", in.id, in.h, r)
				}
			}
			slices.Sort(adopted)
			slices.Sort(orphans)
			if !slices.Equal(adopted, tt.adopted) || !slices.Equal(start, tt.start) || !slices.Equal(orphans, tt.orphans) ||
				!slices.Equal(impostors, tt.impostors) {
				t.Errorf("adopted %v, start %v, orphans %v, impostors %v; want %v, %v, %v, %v",
					adopted, start, orphans, impostors, tt.adopted, tt.start, tt.orphans, tt.impostors)
			}
			for _, r := range tt.state {
				st := p.sets[setKey{r.Template.App, r.Template.Release}]
				if st == nil || len(st.insts) != r.Size {
					t.Errorf("set %s/%d does not hold its size %d: %+v", r.Template.App, r.Template.Release, r.Size, st)
				}
			}
		})
	}
}

// recordOf finds the record of instance id.
func recordOf(state []setRecord, id string) *instanceRecord {
	for _, s := range state {
		for i := range s.Instances {
			if s.Instances[i].ID == id {
				return &s.Instances[i]
			}
		}
	}
	return nil
}

func TestPlanRecoveryCountsARestartForTheDead(t *testing.T) {
	t0 := time.Now()
	p := planRecovery(stateFile{Sets: []setRecord{{
		Template: instance.Template{App: "a", Release: 1}, Size: 1,
		Instances: []instanceRecord{{ID: "a-1-x", Restarts: 2, Draining: true, Handle: &Handle{ID: "a-1-x", PID: 5}}},
	}}}, nil, t0)
	in := p.toStart[0]
	if in.restarts != 3 || !in.draining || in.lastExit == nil || in.lastExit.Code != -1 || in.message == "" {
		t.Errorf("dead recorded instance = %+v, want restarts 3, still draining, an unknown last exit and a message", in)
	}
}
