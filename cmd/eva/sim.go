package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/eva-org/eva/cmd/eva/internal/sim"
)

type simOptions struct {
	seeds, steps, parallel *int
	seed                   *uint64
	verbose                *bool
}

func simFlags(fs *flag.FlagSet) simOptions {
	return simOptions{
		seeds:    fs.Int("seeds", 1000, "how many seeds to run"),
		seed:     fs.Uint64("seed", 1, "the first seed (replay a failure with -seed N -seeds 1 -v)"),
		steps:    fs.Int("steps", 0, "scheduler steps of each seed's faulty phase (default 300)"),
		parallel: fs.Int("parallel", runtime.GOMAXPROCS(0), "seeds run at once"),
		verbose:  fs.Bool("v", false, "print every step of each seed (use with -seeds 1)"),
	}
}

// runSim runs the money path's fault simulator on a range of seeds and
// reports how fast they ran and what they did; it fails on the first seed
// whose invariants break, printing its steps.
func runSim(ctx context.Context, o simOptions, out io.Writer) error {
	cfg := sim.Config{Steps: *o.steps}
	if *o.verbose {
		cfg.Trace = func(line string) { fmt.Fprintln(out, line) }
		*o.parallel = 1
	}
	var progress func(int)
	if !*o.verbose && *o.seeds >= 1000 {
		start := time.Now()
		progress = func(done int) {
			if done%1000 == 0 && done < *o.seeds {
				fmt.Fprintf(os.Stderr, "%d seeds, %s\n", done, time.Since(start).Round(time.Second))
			}
		}
	}
	s := sim.RunSeeds(ctx, cfg, sim.Seeds{First: *o.seed, N: *o.seeds, Parallel: *o.parallel, Stop: true, Progress: progress})
	fmt.Fprintf(out, "%d seeds (%d–%d) in %s: %.0f seeds/s, %d parallel\n", s.Seeds, *o.seed, *o.seed+uint64(max(s.Seeds, 1))-1,
		s.Elapsed.Round(time.Millisecond), s.SeedsPerSecond(), *o.parallel)
	fmt.Fprintf(out, "%d steps, %d events, %d approvals acknowledged, %d refused, %d payments, %d crashes, %d redeliveries\n",
		s.Steps, s.Events, s.Approved, s.Refused, s.Paid, s.Crashes, s.Redeliveries)
	types := make([]string, 0, len(s.Types))
	for t := range s.Types {
		types = append(types, t)
	}
	slices.Sort(types)
	fmt.Fprint(out, "events:")
	for _, t := range types {
		fmt.Fprintf(out, " %s %d,", t, s.Types[t])
	}
	fmt.Fprintln(out)
	if len(s.Failures) > 0 {
		return s.Failures[0].Err
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	fmt.Fprintln(out, "every invariant held after every step")
	return nil
}
