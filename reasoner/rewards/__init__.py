"""Step labellers (process rewards), looked up by config name, and reward shaping."""
