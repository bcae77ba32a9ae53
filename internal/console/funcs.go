package console

import (
	"fmt"
	"html/template"
	"time"
)

var funcs = template.FuncMap{
	// ts is a time in UTC to the second, or "—" for none.
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"bytes": func(n uint64) string {
		switch {
		case n >= 1<<30:
			return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
		}
		return fmt.Sprintf("%d B", n)
	},
	"age": func(d time.Duration) string {
		if d == 0 {
			return "no limit"
		}
		return d.String()
	},
}
