//go:build race

package sim_test

// The race detector slows the simulator about tenfold: fewer seeds by
// default, still every kind of fault.
const defaultSeeds = 20
