//go:build race

package host

// raceEnabled: the tests run with -race, under which wazero compiles
// several times slower.
func init() { raceEnabled = true }
