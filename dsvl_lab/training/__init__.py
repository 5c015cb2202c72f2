"""Training stages: StageSpec (a stage as data), DSVLLitModule, callbacks, hand-off and the pipeline."""
from .handoff import HandoffError, check_stage_output, load_stage_output, write_stage_output
from .module import DSVLLitModule, apply_freeze, group_of, group_sizes
from .run import StageRun, pipeline_specs, run_pipeline, run_stage
from .spec import GROUPS, STAGE_NAMES, StageConfigError, StageSpec, paper_stage, stage_spec

__all__ = ["GROUPS", "STAGE_NAMES", "DSVLLitModule", "HandoffError", "StageConfigError", "StageRun", "StageSpec",
           "apply_freeze", "check_stage_output", "group_of", "group_sizes", "load_stage_output", "paper_stage",
           "pipeline_specs", "run_pipeline", "run_stage", "stage_spec", "write_stage_output"]
