"""The MICCAI BraTS tutorial's VipLauncher script, as written for vip-client 0.1.10; only the
import differs. The data are already on VIP, in a shared (group) folder: four acquisitions per
subject (t1, t1ce, t2, flair). One execution, one job per subject (vip:dot), results left on VIP.

    VIP_API_KEY=... python workflow/examples/launcher/brats_launcher.py

Against the local VIP (``vip-smk serve``) set ``VIP_URL`` too (vip_smk reads it when
``vip_portal_url`` is not given) and put the data where ``DATA`` says first (the local VIP has
no group folders: ``/vip/Home/BraTS (group)`` stands for ``/vip/BraTS (group)``).
"""

import os

# from vip_client import VipLauncher     # vip-client 0.1.10
from vip_smk import VipLauncher

DATA = os.environ.get("BRATS_DATA", "/vip/Home/BraTS (group)/BraTS2021")  # on VIP
OUTPUT = os.environ.get("BRATS_OUTPUT", "/vip/Home/BraTS_results")          # on VIP
SUBJECTS = os.environ.get("BRATS_SUBJECTS", "BraTS2021_00000 BraTS2021_00002 BraTS2021_00003").split()
PIPELINE = "BraTSStats/1.0"

# Connect with the API key held by the environment variable VIP_API_KEY; the session is saved
# on VIP, in OUTPUT/session_data.json, so the same script run again resumes it.
VipLauncher.init(api_key="VIP_API_KEY", backup_location="vip")
VipLauncher.show_pipeline(PIPELINE)

# One list per image parameter, in the same subject order: the pipeline pairs them (vip:dot).
input_settings = {
    kind: [f"{DATA}/{sub}/{sub}_{kind}.csv" for sub in SUBJECTS]
    for kind in ("t1", "t1ce", "t2", "flair")
}

session = VipLauncher(session_name="BraTS_tutorial", output_dir=OUTPUT)
session.launch_pipeline(pipeline_id=PIPELINE, input_settings=input_settings)
session.monitor_workflows(refresh_time=float(os.environ.get("BRATS_REFRESH", 30)))
# The results stay on VIP, under OUTPUT/<date>/. When you no longer need them:
# session.finish()        # removes OUTPUT from VIP (finish(keep_output=True) keeps it)
