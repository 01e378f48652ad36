"""Geography: sphere geometry, the H3 grid, Chain of Region and priors over cells."""
