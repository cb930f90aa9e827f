package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// row is one line of a table: a metric and how to print it.
type row struct {
	metric string
	label  string
	format string // for one value, such as "%.2f"
}

// header is what the report says about how and where it ran.
type header struct {
	command  string
	started  time.Time
	elapsed  time.Duration
	smoke    bool
	nginxWhy string // why nginx was left out, if it was
	// nginxVersion is the nginx that ran, if one did.
	nginxVersion string
	// ecrProxy says which ecr-proxy ran.
	ecrProxy string
}

// report writes the results as Markdown.
func (b *bench) report(w io.Writer, h header, systems []string) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }

	p("# ecr-proxy benchmark results\n\n")
	if h.smoke {
		p("**Smoke run** (tiny images, few clients, one run): checks that every scenario works; the figures mean nothing.\n\n")
	}
	p("Command: `%s` (%s, took %s)\n\n", h.command, h.started.UTC().Format("2006-01-02 15:04 MST"), h.elapsed.Round(time.Second))
	p("Machine: %s\n\n", machine())
	p("ecr-proxy: %s\n\n", h.ecrProxy)
	if h.nginxVersion != "" {
		p("nginx: %s with the seed's configuration (bench/nginx.conf.tmpl)\n\n", h.nginxVersion)
	}
	p("Workload: large image %s, small image %s (incompressible layers, OCI manifests); "+
		"%d run(s), each figure the median [min–max] over runs; ratios are computed within each run, then summarized; "+
		"%d concurrent clients; %d warm tag pulls; each client downloads %d layers at a time on its own connections.\n\n",
		b.large.shape, b.small.shape, b.p.runs, b.p.clients, b.p.tagPulls, b.p.parallel)
	if h.nginxWhy != "" {
		p("nginx left out: %s\n\n", h.nginxWhy)
	}

	timeRows := []row{
		{mPullLargeCold, fmt.Sprintf("pull %s, cold (s)", b.large.shape), "%.2f"},
		{mPullLargeWarm, fmt.Sprintf("pull %s, warm (s)", b.large.shape), "%.2f"},
		{mPullSmallCold, fmt.Sprintf("pull %s, cold (s)", b.small.shape), "%.2f"},
		{mPullSmallWarm, fmt.Sprintf("pull %s, warm (s)", b.small.shape), "%.2f"},
		{mConcWall, fmt.Sprintf("%d clients pull %s at once, cold (s)", b.p.clients, b.large.shape), "%.2f"},
		{mTagP50, "warm tag pull (manifest HEAD by tag) p50 (ms)", "%.2f"},
		{mTagP99, "warm tag pull (manifest HEAD by tag) p99 (ms)", "%.2f"},
		{mPush, fmt.Sprintf("push %s (s)", b.push.shape), "%.2f"},
	}
	p("## Times\n\n")
	b.valueTable(bw, timeRows, systems)
	p("\nn/a (upload …): pushing through that system is not available: `POST /v2/<repo>/blobs/uploads/` answered that status " +
		"instead of 202 (distribution's proxy refuses every write; the floor serves pulls only).\n")

	p("\n## Ratios\n\nEach cell: the ratio computed in every run, median [min–max]; below 1 means the first system is faster.\n\n")
	b.ratioTable(bw, timeRows, systems)

	p("\n## Upstream requests and memory\n\n")
	p("Requests counted by the emulator (registry and S3). A pull of the large image reads %d blobs (layers and config).\n"+
		"Peak memory is VmHWM from /proc of the proxy process (nginx: master + worker + cache processes, summed).\n\n", b.large.blobs)
	b.valueTable(bw, []row{
		{mColdBlobGET, fmt.Sprintf("cold pull %s: upstream blob GETs", b.large.shape), "%.0f"},
		{mWarmUpstream, fmt.Sprintf("warm pull %s: upstream requests", b.large.shape), "%.0f"},
		{mConcBlobGET, fmt.Sprintf("%d concurrent cold clients: upstream blob GETs", b.p.clients), "%.0f"},
		{mConcS3GET, fmt.Sprintf("%d concurrent cold clients: S3 GETs", b.p.clients), "%.0f"},
		{mTagUpstream, "warm tag pull: upstream requests per pull", "%.2f"},
		{mRSSPull, fmt.Sprintf("peak memory, cold + warm pull %s (MiB)", b.large.shape), "%.1f"},
		{mRSSConc, fmt.Sprintf("peak memory, %d concurrent cold clients (MiB)", b.p.clients), "%.1f"},
	}, systems[1:])

	p("\n## Goals (ecr-proxy)\n\n")
	for _, g := range b.goals(systems, timeRows) {
		p("- %s\n", g)
	}

	if errs := b.res.failures(); len(errs) > 0 {
		p("\n## Problems\n\n")
		for _, err := range errs {
			p("- %s\n", strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " ⏎ "))
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// valueTable prints one row per metric and one column per system.
func (b *bench) valueTable(w io.Writer, rows []row, systems []string) {
	fmt.Fprintf(w, "| | %s |\n|---|%s\n", strings.Join(systems, " | "), strings.Repeat("---|", len(systems)))
	for _, r := range rows {
		cells := make([]string, len(systems))
		for i, s := range systems {
			vs, note := b.res.get(r.metric, s)
			cells[i] = cell(summarize(vs), note, r.format)
		}
		fmt.Fprintf(w, "| %s | %s |\n", r.label, strings.Join(cells, " | "))
	}
}

// ratioTable prints, for each metric, every proxy against direct and
// ecr-proxy against the other proxies.
func (b *bench) ratioTable(w io.Writer, rows []row, systems []string) {
	type pair struct{ a, b string }
	var pairs []pair
	for _, s := range systems[1:] {
		pairs = append(pairs, pair{s, sysDirect})
	}
	for _, s := range systems[1:] {
		if s != sysECR && slices.Contains(systems, sysECR) {
			pairs = append(pairs, pair{sysECR, s})
		}
	}
	names := make([]string, len(pairs))
	for i, pr := range pairs {
		names[i] = pr.a + " / " + pr.b
	}
	fmt.Fprintf(w, "| | %s |\n|---|%s\n", strings.Join(names, " | "), strings.Repeat("---|", len(pairs)))
	for _, r := range rows {
		cells := make([]string, len(pairs))
		for i, pr := range pairs {
			a, noteA := b.res.get(r.metric, pr.a)
			c, noteB := b.res.get(r.metric, pr.b)
			note := noteA
			if note == "" {
				note = noteB
			}
			cells[i] = cell(summarize(ratios(a, c)), note, "%.2f×")
		}
		fmt.Fprintf(w, "| %s | %s |\n", r.label, strings.Join(cells, " | "))
	}
}

// cell formats a summary: "1.23 [1.10–1.40]", or the note, or "—".
func cell(s summary, note, format string) string {
	if s.n == 0 {
		if note != "" {
			return "n/a (" + note + ")"
		}
		return "—"
	}
	if s.n == 1 || s.min == s.max {
		return fmt.Sprintf(format, s.med)
	}
	return fmt.Sprintf(format+" ["+format+"–"+format+"]", s.med, s.min, s.max)
}

// goals reports ecr-proxy against the goals of issue 12, which are not
// assertions: at most nginx's time on every timed row, a warm large pull
// within 5 % of direct, a cold large pull within 15 % of the floor; and
// those of earlier issues: one fetch per blob, peak memory, tagttl.
func (b *bench) goals(systems []string, rows []row) []string {
	if !slices.Contains(systems, sysECR) {
		return []string{"ecr-proxy was not run"}
	}
	ratio := func(metric, other string) summary {
		a, _ := b.res.get(metric, sysECR)
		c, _ := b.res.get(metric, other)
		return summarize(ratios(a, c))
	}
	verdict := func(ok bool) string {
		if ok {
			return "**met**"
		}
		return "**not met**"
	}
	var out []string

	for _, r := range rows {
		if !slices.Contains(systems, sysNginx) {
			out = append(out, "ecr-proxy ≤ nginx on every row: n/a (nginx not run)")
			break
		}
		v := ratio(r.metric, sysNginx)
		if v.n == 0 {
			out = append(out, fmt.Sprintf("%s: ecr-proxy / nginx ≤ 1.0: n/a (not measured)", r.label))
			continue
		}
		out = append(out, fmt.Sprintf("%s: ecr-proxy / nginx ≤ 1.0: %s (%s)", r.label, verdict(v.med <= 1), fmtRatio(v)))
	}
	lw := ratio(mPullLargeWarm, sysDirect)
	out = append(out, fmt.Sprintf("Warm pull of the large image ≤ 1.05× direct: %s (%s)", verdict(lw.n > 0 && lw.med <= 1.05), fmtRatio(lw)))
	if slices.Contains(systems, sysFloor) {
		lf := ratio(mPullLargeCold, sysFloor)
		out = append(out, fmt.Sprintf("Cold pull of the large image ≤ 1.15× floor: %s (%s)", verdict(lf.n > 0 && lf.med <= 1.15), fmtRatio(lf)))
	} else {
		out = append(out, "Cold pull of the large image ≤ 1.15× floor: n/a (floor not run)")
	}

	gets, _ := b.res.get(mConcBlobGET, sysECR)
	s3, _ := b.res.get(mConcS3GET, sysECR)
	g, s := summarize(gets), summarize(s3)
	once := g.n > 0 && s.n > 0 && g.max <= float64(b.large.blobs) && s.max <= float64(b.large.blobs)
	line := fmt.Sprintf("%d concurrent cold clients fetch each blob once: %s (blob GETs %s, S3 GETs %s, for %d blobs; max over runs)",
		b.p.clients, verdict(once), fmtCount(g), fmtCount(s), b.large.blobs)
	if g.n == 0 {
		line = fmt.Sprintf("%d concurrent cold clients fetch each blob once: n/a (not measured)", b.p.clients)
	}
	out = append(out, line)
	peak := math.NaN()
	for _, m := range []string{mRSSPull, mRSSConc} {
		vs, _ := b.res.get(m, sysECR)
		if s := summarize(vs); s.n > 0 && (math.IsNaN(peak) || s.max > peak) {
			peak = s.max
		}
	}
	if math.IsNaN(peak) {
		out = append(out, "Peak memory ≤ 64 MiB: n/a (not measured)")
	} else {
		out = append(out, fmt.Sprintf("Peak memory ≤ 64 MiB: %s (highest VmHWM over all runs %.1f MiB)", verdict(peak <= 64), peak))
	}

	tu, _ := b.res.get(mTagUpstream, sysECRTTL)
	if s := summarize(tu); s.n == 0 {
		out = append(out, "Warm tag pull inside a revalidation window needs no upstream round trip: n/a (ecr-proxy+tagttl not run)")
	} else {
		out = append(out, fmt.Sprintf("Warm tag pull inside a revalidation window needs no upstream round trip: %s "+
			"(ecr-proxy+tagttl: %s upstream requests per warm tag pull)", verdict(s.max == 0), fmtCountF(s)))
	}
	return out
}

func fmtRatio(s summary) string {
	if s.n == 0 {
		return "n/a"
	}
	return cell(s, "", "%.2f×")
}

func fmtCount(s summary) string {
	if s.n == 0 {
		return "n/a"
	}
	return cell(s, "", "%.0f")
}

func fmtCountF(s summary) string {
	if s.n == 0 {
		return "n/a"
	}
	return cell(s, "", "%.2f")
}

// machine describes where the benchmark ran: CPUs, memory, CPU model,
// kernel, Go and nginx versions.
func machine() string {
	parts := []string{fmt.Sprintf("%d CPUs (nproc)", runtime.NumCPU())}
	if mem := procField("/proc/meminfo", "MemTotal:"); mem != "" {
		var kb int64
		if _, err := fmt.Sscanf(mem, "%d", &kb); err == nil {
			parts = append(parts, fmt.Sprintf("%.1f GiB memory", float64(kb)/(1<<20)))
		}
	}
	if model := procField("/proc/cpuinfo", "model name"); model != "" {
		parts = append(parts, "CPU "+strings.TrimSpace(strings.TrimPrefix(model, ":")))
	}
	if k, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		parts = append(parts, "Linux "+strings.TrimSpace(string(k)))
	}
	goVersion := runtime.Version()
	if out, err := exec.Command("go", "version").Output(); err == nil {
		goVersion = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	parts = append(parts, "Go "+goVersion)
	return strings.Join(parts, "; ")
}

// sourceRevision describes the working tree ecr-proxy was built from:
// "commit abc1234", with "+ local changes" when the tree is dirty.
func sourceRevision() string {
	rev, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "an unknown revision"
	}
	out := "commit " + strings.TrimSpace(string(rev))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		out += " + local changes"
	}
	return out
}

// procField returns the rest of the first line of file starting with prefix.
func procField(file, prefix string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), prefix); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// nginxVersion is "nginx/1.22.1", or "" when it cannot be run.
func nginxVersion(bin string) string {
	out, err := exec.Command(bin, "-v").CombinedOutput() //nolint:gosec // the configured nginx binary
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: ")
}
