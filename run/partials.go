package run

import (
	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/papo"
)

// PartialsRow is a step's partials as a row of the partials table.
func PartialsRow(step int64, g papo.StepPartials) papoio.StepPartials {
	return papoio.StepPartials{Step: step, EntropyTokens: g.Entropy.Tokens, EntropySum: g.Entropy.Sum,
		WeightedTokens: g.Weighted, PolaritySum: g.PolaritySum, PolaritySum2: g.PolaritySum2,
		AbsAdvantage: g.AbsAdvantage, AbsAdvantageSign: g.AbsAdvantageSign}
}

// GlobalPartials indexes a global partials table by step, for Config.Global.
func GlobalPartials(rows []papoio.StepPartials) map[int64]papo.StepPartials {
	global := make(map[int64]papo.StepPartials, len(rows))
	for _, g := range rows {
		global[g.Step] = papo.StepPartials{Entropy: papo.EntropySum{Sum: g.EntropySum, Tokens: g.EntropyTokens},
			Weighted: g.WeightedTokens, PolaritySum: g.PolaritySum, PolaritySum2: g.PolaritySum2,
			AbsAdvantage: g.AbsAdvantage, AbsAdvantageSign: g.AbsAdvantageSign}
	}
	return global
}

// Partials are the rows of the partials table from a PartialsOnly run's reports.
func (o *Output) Partials() []papoio.StepPartials {
	var rows []papoio.StepPartials
	for _, r := range o.reports {
		if r.Partials != nil {
			rows = append(rows, PartialsRow(r.Summary.Step, *r.Partials))
		}
	}
	return rows
}
