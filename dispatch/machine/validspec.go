package machine

// ValidSpec is a task spec that Normalize accepted, sealed: its fields
// are read through methods and cannot be set, so whoever holds one knows
// it was checked and filled with its defaults, and the engine takes it
// (Engine.SubmitValidView, SubmitValidMany) without running Normalize
// again. The API checks a spec once, before it looks its handler up
// among the deployed plugins (SpecJSON.ToValidSpec), and hands the
// engine that. A spec a caller builds or changes itself is a TaskSpec,
// which Engine.Submit checks as before: a flag on TaskSpec saying
// "normalized" would have trusted a spec changed after Normalize.
//
// Its Input, Labels and After are shared with the spec it was made from,
// as a TaskSpec's are when it is copied: change none of them afterwards.
type ValidSpec struct{ spec TaskSpec }

// Validate normalizes spec (Normalize) and seals it; the error is
// Normalize's.
func Validate(spec TaskSpec) (ValidSpec, error) {
	if err := spec.Normalize(); err != nil {
		return ValidSpec{}, err
	}
	return ValidSpec{spec: spec}, nil
}

// Spec is a copy of the normalized spec.
func (v *ValidSpec) Spec() TaskSpec { return v.spec }

// ID is the spec's task id ("" when the engine is to make one).
func (v *ValidSpec) ID() TaskID { return v.spec.ID }

// Handler is the spec's handler.
func (v *ValidSpec) Handler() string { return v.spec.Handler }
