package bench

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// The plots are plain SVG written here: no plotting dependency.

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"}

type series struct {
	name   string
	xs, ys []float64
	color  string
	dashed bool
}

type axis struct {
	label string
	log   bool
}

const (
	plotW, plotH             = 760, 440
	marginL, marginR         = 70, 220
	marginT, marginB         = 40, 50
	innerW, innerH           = plotW - marginL - marginR, plotH - marginT - marginB
	fontAttrs                = `font-family="sans-serif" font-size="12"`
	gridColor, axisTextColor = "#dddddd", "#333333"
)

// lineChart draws series as lines with markers, x and y linear or log.
func lineChart(title string, xa, ya axis, ss []series) string {
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for i := range s.xs {
			if (xa.log && s.xs[i] <= 0) || (ya.log && s.ys[i] <= 0) {
				continue
			}
			xmin, xmax = math.Min(xmin, s.xs[i]), math.Max(xmax, s.xs[i])
			ymin, ymax = math.Min(ymin, s.ys[i]), math.Max(ymax, s.ys[i])
		}
	}
	if math.IsInf(xmin, 0) {
		return emptySVG(title)
	}
	if !ya.log {
		ymin = math.Min(0, ymin)
	}
	xt, xlo, xhi := ticks(xmin, xmax, xa.log)
	yt, ylo, yhi := ticks(ymin, ymax, ya.log)
	sx := scaler(xlo, xhi, xa.log, marginL, marginL+innerW)
	sy := scaler(ylo, yhi, ya.log, marginT+innerH, marginT)
	var b strings.Builder
	header(&b, title)
	grid(&b, xt, yt, sx, sy, xa, ya)
	for i, s := range ss {
		color := s.color
		if color == "" {
			color = palette[i%len(palette)]
		}
		var pts []string
		for j := range s.xs {
			if (xa.log && s.xs[j] <= 0) || (ya.log && s.ys[j] <= 0) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", sx(s.xs[j]), sy(s.ys[j])))
		}
		dash := ""
		if s.dashed {
			dash = ` stroke-dasharray="6,4"`
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", color, dash, strings.Join(pts, " "))
		if len(pts) <= 12 {
			for _, p := range pts {
				xy := strings.Split(p, ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], color)
			}
		}
		legend(&b, i, s.name, color, s.dashed)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// barChart draws groups of bars, one bar per series in each group.
func barChart(title, ylabel string, groups, names []string, values [][]float64) string {
	ymax := 0.0
	for _, vs := range values {
		for _, v := range vs {
			ymax = math.Max(ymax, v)
		}
	}
	if ymax == 0 {
		return emptySVG(title)
	}
	yt, ylo, yhi := ticks(0, ymax, false)
	sy := scaler(ylo, yhi, false, marginT+innerH, marginT)
	var b strings.Builder
	header(&b, title)
	grid(&b, nil, yt, nil, sy, axis{}, axis{label: ylabel})
	gw := float64(innerW) / float64(len(groups))
	bw := gw * 0.8 / float64(len(names))
	for g, name := range groups {
		x0 := float64(marginL) + float64(g)*gw + gw*0.1
		for s := range names {
			v := values[s][g]
			y := sy(v)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n",
				x0+float64(s)*bw, y, bw-2, sy(0)-y, palette[s%len(palette)])
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" %s fill="%s">%s</text>`+"\n",
			float64(marginL)+float64(g)*gw+gw/2, marginT+innerH+18, fontAttrs, axisTextColor, html.EscapeString(name))
	}
	for s, n := range names {
		legend(&b, s, n, palette[s%len(palette)], false)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func header(b *strings.Builder, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`+"\n", plotW, plotH, plotW, plotH)
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(b, `<text x="%d" y="22" font-family="sans-serif" font-size="15" font-weight="bold" fill="#111">%s</text>`+"\n", marginL, html.EscapeString(title))
}

func emptySVG(title string) string {
	var b strings.Builder
	header(&b, title+" (no data)")
	b.WriteString("</svg>\n")
	return b.String()
}

func grid(b *strings.Builder, xt, yt []float64, sx, sy func(float64) float64, xa, ya axis) {
	for _, y := range yt {
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", marginL, sy(y), marginL+innerW, sy(y), gridColor)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end" %s fill="%s">%s</text>`+"\n", marginL-6, sy(y)+4, fontAttrs, axisTextColor, tickLabel(y))
	}
	for _, x := range xt {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", sx(x), marginT, sx(x), marginT+innerH, gridColor)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle" %s fill="%s">%s</text>`+"\n", sx(x), marginT+innerH+18, fontAttrs, axisTextColor, tickLabel(x))
	}
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", marginL, marginT, innerW, innerH)
	if xa.label != "" {
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle" %s fill="%s">%s</text>`+"\n", marginL+innerW/2, plotH-10, fontAttrs, axisTextColor, html.EscapeString(xa.label))
	}
	if ya.label != "" {
		fmt.Fprintf(b, `<text transform="translate(16,%d) rotate(-90)" text-anchor="middle" %s fill="%s">%s</text>`+"\n", marginT+innerH/2, fontAttrs, axisTextColor, html.EscapeString(ya.label))
	}
}

func legend(b *strings.Builder, i int, name, color string, dashed bool) {
	x, y := marginL+innerW+16, marginT+10+i*20
	dash := ""
	if dashed {
		dash = ` stroke-dasharray="6,4"`
	}
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"%s/>`+"\n", x, y, x+24, y, color, dash)
	fmt.Fprintf(b, `<text x="%d" y="%d" %s fill="%s">%s</text>`+"\n", x+30, y+4, fontAttrs, axisTextColor, html.EscapeString(name))
}

// ticks returns tick positions and the axis range: "nice" steps on a
// linear axis, 1-2-5 decades on a log axis.
func ticks(lo, hi float64, log bool) ([]float64, float64, float64) {
	if log {
		a, z := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if a == z {
			z++
		}
		var t []float64
		for e := a; e <= z; e++ {
			for _, m := range []float64{1, 2, 5} {
				v := m * math.Pow(10, e)
				if v >= math.Pow(10, a) && v <= math.Pow(10, z) && (z-a <= 3 || m == 1) {
					t = append(t, v)
				}
			}
		}
		return t, math.Pow(10, a), math.Pow(10, z)
	}
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / 6
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	start := math.Floor(lo/step) * step
	end := math.Ceil(hi/step) * step
	var t []float64
	for v := start; v <= end+step/2; v += step {
		t = append(t, v)
	}
	return t, start, end
}

func scaler(lo, hi float64, log bool, p0, p1 float64) func(float64) float64 {
	if log {
		lo, hi = math.Log10(lo), math.Log10(hi)
	}
	return func(v float64) float64 {
		if log {
			v = math.Log10(v)
		}
		return p0 + (v-lo)/(hi-lo)*(p1-p0)
	}
}

func tickLabel(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1e6:
		return trimZeros(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case math.Abs(v) >= 1e4:
		return trimZeros(fmt.Sprintf("%.1f", v/1e3)) + "k"
	case math.Abs(v) >= 1:
		return trimZeros(fmt.Sprintf("%.1f", v))
	}
	return trimZeros(fmt.Sprintf("%.3f", v))
}

func trimZeros(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// plots renders every plot the results allow, by file name.
func plots(r *Results) map[string]string {
	out := map[string]string{}
	percent := make([]float64, 101)
	for i := range percent {
		percent[i] = float64(i)
	}
	if len(r.Handshakes) > 0 {
		var ss []series
		for _, tlsOn := range []bool{false, true} {
			idx := 0
			seen := map[string]*series{}
			var order []string
			for _, c := range r.Handshakes {
				if c.TLS != tlsOn {
					continue
				}
				name := c.name()
				if tlsOn {
					name += ", TLS"
				}
				s := seen[name]
				if s == nil {
					s = &series{name: name, dashed: tlsOn}
					seen[name] = s
					order = append(order, name)
				}
				s.xs = append(s.xs, float64(c.Conc))
				s.ys = append(s.ys, c.Rate)
			}
			for _, n := range order {
				s := seen[n]
				s.color = palette[idx%len(palette)]
				idx++
				ss = append(ss, *s)
			}
		}
		out["handshakes.svg"] = lineChart("Handshakes per second by concurrency (solid: no TLS, dashed: TLS 1.3)",
			axis{label: "concurrent clients", log: true}, axis{label: "operations per second"}, ss)

		conc := 32
		if r.hs("plain", "", false, conc) == nil {
			conc = 0
			for _, c := range r.Handshakes {
				conc = max(conc, c.Conc)
			}
		}
		var cs []series
		for _, c := range r.Handshakes {
			if c.TLS || c.Conc != conc || len(c.CDF) == 0 || (c.System == "centrifuge" && c.Alg == "anon") {
				continue
			}
			cs = append(cs, series{name: c.name(), xs: c.CDF, ys: percent})
		}
		out["handshake-latency.svg"] = lineChart(fmt.Sprintf("Handshake latency, concurrency %d, no TLS", conc),
			axis{label: "connect latency (ms)", log: true}, axis{label: "percentile"}, cs)
	}
	if len(r.Frames) > 0 {
		var groups []string
		vals := [][]float64{nil, nil}
		var fs []series
		i := 0
		for _, c := range r.Frames {
			if c.System != "plain" {
				continue
			}
			w := r.frame("wsproof", c.Size, c.Inflight)
			if w == nil {
				continue
			}
			groups = append(groups, fmt.Sprintf("%s x%d", sizeName(c.Size), c.Inflight))
			vals[0] = append(vals[0], c.Rate)
			vals[1] = append(vals[1], w.Rate)
			color := palette[i%len(palette)]
			i++
			fs = append(fs, series{name: fmt.Sprintf("plain %s x%d", sizeName(c.Size), c.Inflight), xs: c.CDF, ys: percent, color: color, dashed: true})
			fs = append(fs, series{name: fmt.Sprintf("wsproof %s x%d", sizeName(c.Size), c.Inflight), xs: w.CDF, ys: percent, color: color})
		}
		out["frames.svg"] = barChart(fmt.Sprintf("Echoed messages per second, %d sockets (size x in flight)", r.Frames[0].Conns),
			"messages per second", groups, []string{"plain gorilla", "wsproof"}, vals)
		out["frame-latency.svg"] = lineChart("Frame round-trip latency (dashed: plain gorilla)",
			axis{label: "latency (µs)", log: true}, axis{label: "percentile"}, fs)
	}
	if len(r.Memory) > 0 {
		var ms []series
		for _, m := range r.Memory {
			var xs, ys []float64
			for _, p := range m.Points {
				xs, ys = append(xs, p[0]), append(ys, p[1])
			}
			name := "wsproof"
			if m.System == "plain" {
				name = "plain gorilla"
			}
			ms = append(ms, series{name: fmt.Sprintf("%s: %.1f KiB each", name, m.PerConnKiB), xs: xs, ys: ys})
		}
		out["memory.svg"] = lineChart("Server RSS growth by idle open sockets (after GC)",
			axis{label: "open sockets"}, axis{label: "RSS growth (MiB)"}, ms)
	}
	if r.DoS != nil {
		for name, svg := range dosPlots(r.DoS) {
			out[name] = svg
		}
	}
	for name, svg := range revokeRoomPlots(r) {
		out[name] = svg
	}
	if s := r.Scale; s != nil && len(s.CDF) > 0 {
		out["scale-latency.svg"] = lineChart(fmt.Sprintf("Handshake latency while opening %d sessions at %.0f/s", s.N, s.ArrivalRate),
			axis{label: "connect latency (ms)", log: true}, axis{label: "percentile"},
			[]series{{name: "wsproof ES256", xs: s.CDF, ys: percent}})
	}
	return out
}
