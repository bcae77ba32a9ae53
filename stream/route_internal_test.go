package stream

import "testing"

// The allocation-free path of RouteFor gives what the general one gives.
func FuzzRouteForFastPath(f *testing.F) {
	for _, s := range []string{"inspection.confirmed", "redrive.x", "a.b", "A.b", "a..b", "a.b.c", "a-b_c.d9", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, eventType string) {
		if got, want := RouteFor(eventType), routeForGeneral(eventType); got != want {
			t.Fatalf("RouteFor(%q) = %+v, general path %+v", eventType, got, want)
		}
	})
}
