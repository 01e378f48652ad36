"""Precision stage: Riemannian flow matching on S² turning evidence into a density, samples,
a point estimate and credible regions on the H3 grid."""

from avgeo.precision.model import FlowModel, VelocityNet
from avgeo.precision.path import GeodesicPath
from avgeo.precision.solver import log_likelihood, odeint

__all__ = ["FlowModel", "GeodesicPath", "VelocityNet", "log_likelihood", "odeint"]
