"""The Kaggle Galaxy Zoo layout: file and folder names, image size and data-set sizes, in one place.

    <data folder>/
      training_solutions_rev1.csv           GalaxyID + the 37 columns (any subset: partial labels)
      images_training_rev1/<GalaxyID>.jpg   424x424 RGB JPEG
      images_test_rev1/<GalaxyID>.jpg       the test images (optional)
      SYNTHETIC.json                        only in folders written by galaxylib.synth
      expected_solutions.csv                only there too: the labels with infinitely many volunteers
"""

LABELS_CSV = "training_solutions_rev1.csv"
LABELS_GLOB = "training_solutions_rev1*.csv"  # also accepts e.g. training_solutions_rev1_partial.csv
TRAIN_IMAGES_DIR = "images_training_rev1"
TEST_IMAGES_DIR = "images_test_rev1"
SYNTHETIC_MARKER = "SYNTHETIC.json"
EXPECTED_CSV = "expected_solutions.csv"  # a synthetic folder's infinite-volunteer values (galaxylib.synth)
IMAGE_SUFFIXES = (".jpg", ".jpeg")

FRAME = 424  # side of every Kaggle image, px: the frame all crops and rotations are measured in
FULL_TRAIN_COUNT = 61_578  # labelled training images in the Kaggle download
FULL_TEST_COUNT = 79_975  # test images
